"""Video tracking parity with the official SAM2VideoPredictor (sam2==1.1.0), fp32 on the CPU.

Same random-weight checkpoint (every tensor randomised) in both; a synthetic 96x128 clip with
two moving textured objects. The scenarios (tests/video/scenario.py drives both sides):

* short: object 1 clicked on frame 0, object 2 given as a *mask* on frame 1, propagation
  (object 2 is tracked on frame 0 before its prompt, with no object pointer yet);
* full (8 frames): object 1 clicked on frame 0 and re-clicked there (previous mask fed back),
  object 2 boxed on frame 3, forward propagation, a correction click on a tracked frame (5),
  propagation restarted at 6, reverse propagation from 7 over 4 frames.

Per event and object: IoU of the video-resolution masks (bar: >= 0.99) and the max abs
difference of the 256x256 logits (stated tolerance: 1e-3; measured about 1e-5).

What is matched, and how:

* frames: both read the same JPEG files; ours gets them decoded by PIL (as the official) and
  pre-processes with ``preprocessing="exact"``, bit-exact with the official loader;
* memory features: both store bfloat16 (ours rounds exactly as torch does);
* hole filling: the official ``fill_hole_area=8`` needs the CUDA extension ``sam2._C``; without
  it (any CPU install) the official skips the step with a warning, so ours runs with
  ``fill_hole_area=0`` here (ours would fill with OpenCV otherwise);
* one patch of the oracle: its bf16 memory crashes fp32 CPU inference on frames with no object
  pointer yet; ``scenario.patch_official_bf16_memory`` widens it exactly as it does elsewhere.

The ONNX Runtime variant exports the four artifacts (sam2edge.export.onnx_export, legacy
exporter: see _onnx_predictor) once per run and drives the same tracker through ONNX Runtime
runners.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sam2edge.config import get_config
from tests.oracle import official_config_file, official_state_dict, requires_oracle
from tests.video import scenario
from tests.video.clip import make_clip, write_jpeg_folder

torch = pytest.importorskip("torch")
pytestmark = [requires_oracle, pytest.mark.oracle]

NAME = "sam2.1_hiera_tiny"
# Random-weight seed: with seed 3 the prompted objects decode as present (object score > 0); with
# seed 0 every prompt decodes as "absent" (all logits -1024), which would hide the prompt path.
SEED = 3
HEIGHT, WIDTH = 96, 128
IOU_BAR = 0.99
LOGIT_TOL = 1e-3


def _has_cuda_extension() -> bool:
    try:
        import sam2._C  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def weights():
    torch.set_num_threads(2)
    return official_state_dict(NAME, SEED)


@pytest.fixture(scope="module")
def official(weights):
    from sam2.build_sam import build_sam2_video_predictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = build_sam2_video_predictor(official_config_file(NAME), None, device="cpu")
    pred.load_state_dict(weights, strict=True)
    scenario.patch_official_bf16_memory(pred.eval())
    return pred


def _torch_predictor(weights):
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.model import build_model
    from sam2edge.runtime.image.predictor import SAM2

    net = build_model(NAME)
    net.load_state_dict(weights, strict=True)
    return SAM2(make_torch_runners(net.eval(), "cpu"), get_config(NAME))


def _onnx_predictor(weights, folder: Path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
    from sam2edge.contract.manifest import read_manifest
    from sam2edge.export.onnx_export import ExportSettings, export_model
    from sam2edge.model import build_model
    from sam2edge.runtime.image.predictor import SAM2

    net = build_model(NAME)
    net.load_state_dict(weights, strict=True)
    # The legacy exporter: today's dynamo graph of memory_attention fails in ONNX Runtime with no
    # object pointer (num_obj_ptrs=0, needed on the first frame tracked before an object's prompt);
    # see the video report. Everything else is identical between the two exporters.
    export_model(net.eval(), folder, {"path": f"random weights ({NAME}, seed {SEED})", "sha256": f"random-seed-{SEED}"},
                 settings=ExportSettings(exporter="legacy", threads=2))
    pred = SAM2(make_onnxruntime_runners(folder, threads=2), get_config(NAME))
    pred.host_constants = read_manifest(folder)["host_constants"]
    return pred


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def ours(request, weights, tmp_path_factory):
    if request.param == "torch":
        return _torch_predictor(weights)
    return _onnx_predictor(weights, tmp_path_factory.mktemp("onnx"))


def _clip(frames: int, tmp_path_factory):
    clip = make_clip(frames, HEIGHT, WIDTH)
    folder = tmp_path_factory.mktemp(f"clip{frames}")
    return clip, folder, write_jpeg_folder(clip.frames, folder)


def _check(name: str, backend: str, mine, ref) -> None:
    worst_iou, worst_diff, lines = scenario.compare(mine, ref)
    print(f"\n[{name} / {backend}] vs official SAM2VideoPredictor:\n  " + "\n  ".join(lines))
    print(f"  worst IoU {worst_iou:.4f}, worst low-res logit diff {worst_diff:.2e}")
    assert worst_iou >= IOU_BAR
    assert worst_diff <= LOGIT_TOL


def _our_tracker(pred, frames):
    return pred.track(frames, input_color_format="rgb", preprocessing="exact",
                      fill_hole_area=8 if _has_cuda_extension() else 0)


def _short_steps(clip):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    x0, y0, x1, y1 = (int(round(v)) for v in clip.boxes[2][1])
    mask[y0:y1, x0:x1] = True
    return [
        ("points", {"frame": 0, "obj_id": 1, "points": [clip.center(1, 0)], "labels": [1]}),
        ("mask", {"frame": 1, "obj_id": 2, "mask": mask}),
        ("propagate", {}),
    ]


def _full_steps(clip):
    x, y = clip.center(1, 0)
    return [
        ("points", {"frame": 0, "obj_id": 1, "points": [[x, y]], "labels": [1]}),
        ("points", {"frame": 0, "obj_id": 1, "points": [[x + 14, y]], "labels": [0], "clear_old_points": False}),
        ("box", {"frame": 3, "obj_id": 2, "box": list(clip.boxes[2][3])}),
        ("propagate", {}),
        ("points", {"frame": 5, "obj_id": 1, "points": [clip.center(1, 5), [4.0, 90.0]], "labels": [1, 0]}),
        ("propagate", {"start": 6}),
        ("propagate", {"start": 7, "reverse": True, "max_frames": 4}),
    ]


@pytest.fixture(scope="module")
def short_reference(official, tmp_path_factory):
    clip, folder, frames = _clip(3, tmp_path_factory)
    steps = _short_steps(clip)
    return steps, frames, scenario.run(scenario.OfficialDriver(official, str(folder)), steps)


@pytest.fixture(scope="module")
def full_reference(official, tmp_path_factory):
    clip, folder, frames = _clip(8, tmp_path_factory)
    steps = _full_steps(clip)
    return steps, frames, scenario.run(scenario.OfficialDriver(official, str(folder)), steps)


def test_short_scenario_with_mask_prompt(ours, short_reference, request):
    steps, frames, ref = short_reference
    mine = scenario.run(scenario.OursDriver(_our_tracker(ours, frames)), steps)
    _check("short: clicks, a mask on a later frame, propagation", request.node.callspec.params["ours"], mine, ref)


@pytest.mark.slow
def test_full_scenario(ours, full_reference, request):
    steps, frames, ref = full_reference
    mine = scenario.run(scenario.OursDriver(_our_tracker(ours, frames)), steps)
    assert len(ref) == 2 + 1 + 8 + 1 + 2 + 5
    _check("full: 2 objects, re-click, later box, correction, restart, reverse",
           request.node.callspec.params["ours"], mine, ref)
