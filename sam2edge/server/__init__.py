"""``sam2edge serve``: the model over HTTP (an app layer: it imports the runtime, nothing imports it).

Roboflow-compatible image endpoints, video sessions, a camera WebSocket, a click-to-segment
page and Prometheus metrics; see ``app.py`` for the routes. Needs the ``server`` extra
(FastAPI, uvicorn, python-multipart, prometheus-client, pycocotools, Pillow). Importing this
package imports none of them: ``from sam2edge.server.app import create_app`` does.
"""
