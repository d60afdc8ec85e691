"""The light runtime: from_pretrained (loading), backend selection and fallback, the image API (image/)
and video tracking (video/). Never imports the export stage."""
