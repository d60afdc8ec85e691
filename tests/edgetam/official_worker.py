"""The official EdgeTAM side of the oracle tests; runs in its own venv (scripts/edgetam_oracle_env.sh).

The official code (PyPI ``edgetam-dimos``) installs a package named ``sam2`` that would shadow
the official SAM2 oracle, so it never runs in the test process. The tests call:

    <venv>/bin/python tests/edgetam/official_worker.py CHECKPOINT REQUEST.npz OUT.npz

REQUEST.npz holds ``__tasks__`` (a JSON list of {"id", "kind", ...options}) and each task's
arrays as ``<id>/<name>``; OUT.npz gets each task's outputs as ``<id>/<name>``. The model is
the official ``build_sam2("configs/edgetam.yaml", CHECKPOINT)`` (strict load, eval, CPU), with
timm's pretrained-weights download switched off (the checkpoint replaces them anyway).

Task kinds (shapes for B images / objects):
  encode            image [B,3,1024,1024] (normalised) -> image_embed, high_res_feats_0/1,
                    vision_features (as SAM2ImagePredictor.set_image computes them), trunk_0..3
  memory_encode     vision_features [B,256,64,64], high_res_masks [B,1,1024,1024] (logits),
                    object_score_logits [B,1]; option is_mask_from_pts -> maskmem_raw [B,64,64,64]
                    (memory encoder), maskmem_features [B,512,64], maskmem_pos [B,512,64] (perceiver)
  memory_attention  curr [N,1,256], memory [F*512+K,1,64], tpos_rows [F]; options num_obj_ptr_tokens (K),
                    num_spatial_mem (F) -> out [N,1,256] (official positions, see memory_attention())
  memory_path       memory frames -> _encode_new_memory -> memory attention (see memory_path())
  predict           image uint8 [H,W,3]; per case c: c<i>/point_coords, point_labels, box, mask_input
                    (each optional); options cases=[{"multimask": bool}] -> c<i>/masks, scores, logits
  video             options folder (JPEG frames), steps [[verb, kwargs]] as in tests/video/scenario.py
                    -> events (JSON), e<i>/masks, e<i>/low_res (see video())

Only torch, numpy, the official package and timm are imported here (plus tests/torchvision_shim.py
through the stand-in), never sam2edge.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _setup() -> None:
    sys.path.insert(0, str(REPO))
    from tests.edgetam.torchvision_standin import install

    print(f"[edgetam oracle] torchvision: {install()}", file=sys.stderr)
    import sam2.modeling.backbones.timm as official_timm

    create = official_timm.create_model

    def offline_create_model(*args, **kwargs):  # the config asks for ImageNet weights: never download
        return create(*args, **{**kwargs, "pretrained": False})

    official_timm.create_model = offline_create_model


def build(checkpoint: str):
    import contextlib
    import io

    from sam2.build_sam import build_sam2

    with contextlib.redirect_stdout(io.StringIO()):  # the builder prints its progress
        return build_sam2("configs/edgetam.yaml", ckpt_path=checkpoint, device="cpu", mode="eval")


def _tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def encode(model, x: dict, task: dict) -> dict:
    import torch

    with torch.no_grad():
        trunk = model.image_encoder.trunk(_tensor(x["image"]))
        out = model.forward_image(_tensor(x["image"]))
    fpn = out["backbone_fpn"]
    result = {f"trunk_{i}": t for i, t in enumerate(trunk)}
    result |= {"high_res_feats_0": fpn[0], "high_res_feats_1": fpn[1], "vision_features": fpn[2],
               "image_embed": fpn[2] + model.no_mem_embed.view(1, -1, 1, 1)}
    return result


def memory_encode(model, x: dict, task: dict) -> dict:
    import torch

    captured = {}
    hook = model.spatial_perceiver.register_forward_pre_hook(lambda m, args: captured.update(raw=args[0].clone()))
    vf = _tensor(x["vision_features"])
    b, c, h, w = vf.shape
    model.binarize_mask_from_pts_for_mem_enc = True  # as build_sam2_video_predictor sets it
    try:
        with torch.no_grad():
            feats, pos = model._encode_new_memory(
                current_vision_feats=[vf.flatten(2).permute(2, 0, 1)], feat_sizes=[(h, w)],
                pred_masks_high_res=_tensor(x["high_res_masks"]), object_score_logits=_tensor(x["object_score_logits"]),
                is_mask_from_pts=bool(task["is_mask_from_pts"]),
            )
    finally:
        hook.remove()
    return {"maskmem_raw": captured["raw"], "maskmem_features": feats, "maskmem_pos": pos[0]}


def _positions(model, side: int) -> tuple:
    """The official current-frame position encoding [N,1,256] and memory-latent positions [512,1,64]."""
    import torch

    grid = torch.zeros(1, 1, side, side)
    curr_pos = model.image_encoder.neck.position_encoding(grid).flatten(2).permute(2, 0, 1)
    perceiver = model.spatial_perceiver
    g = int(perceiver.num_latents_2d**0.5)
    pos_2d = perceiver.position_encoding(torch.zeros(1, 1, g, g)).flatten(2).permute(2, 0, 1)  # [256,1,64]
    latent_pos = torch.cat((torch.zeros(perceiver.num_latents, 1, pos_2d.shape[-1]), pos_2d))
    return curr_pos, latent_pos


def memory_attention(model, x: dict, task: dict) -> dict:
    """curr [N,1,256]; memory [F*512+K,1,64] (latents then pointer tokens); tpos_rows [F]. Positions are the
    official ones: sine for the current frame, the perceiver's latent positions + maskmem_tpos_enc[row]
    for memory, zeros for pointers (EdgeTAM adds no temporal encoding to them)."""
    import torch

    k, f = int(task["num_obj_ptr_tokens"]), int(task["num_spatial_mem"])
    curr = _tensor(x["curr"])
    with torch.no_grad():
        curr_pos, latent_pos = _positions(model, int(round(curr.shape[0] ** 0.5)))
        memory_pos = [latent_pos + model.maskmem_tpos_enc[int(r)] for r in x["tpos_rows"]]
        memory_pos.append(torch.zeros(k, 1, latent_pos.shape[-1]))
        out = model.memory_attention(
            curr=[curr], curr_pos=[curr_pos], memory=_tensor(x["memory"]), memory_pos=torch.cat(memory_pos),
            num_obj_ptr_tokens=k, num_spatial_mem=f,
        )
    return {"out": out}


def memory_path(model, x: dict, task: dict) -> dict:
    """F memory frames through _encode_new_memory (each alone: the official perceiver takes batch 1),
    assembled as _prepare_memory_conditioned_features does, then memory attention on the current frame.

    Inputs: memory_vision_features [F,256,64,64], memory_masks [F,1,1024,1024] (logits), memory_scores
    [F,1], curr [1,256,64,64], obj_ptrs [K,256]; options from_points [F] bools, tpos_rows [F] ints.
    """
    import torch

    model.binarize_mask_from_pts_for_mem_enc = True  # as build_sam2_video_predictor sets it
    vfs, masks, scores = (_tensor(x[k]) for k in ("memory_vision_features", "memory_masks", "memory_scores"))
    memory, memory_pos = [], []
    with torch.no_grad():
        for i, (from_points, row) in enumerate(zip(task["from_points"], task["tpos_rows"])):
            feats, pos = model._encode_new_memory(
                current_vision_feats=[vfs[i:i + 1].flatten(2).permute(2, 0, 1)], feat_sizes=[tuple(vfs.shape[-2:])],
                pred_masks_high_res=masks[i:i + 1], object_score_logits=scores[i:i + 1], is_mask_from_pts=bool(from_points),
            )
            memory.append(feats.permute(1, 0, 2))
            memory_pos.append(pos[-1].permute(1, 0, 2) + model.maskmem_tpos_enc[row])
        ptrs = _tensor(x["obj_ptrs"])[:, None, :]  # [K,1,256] -> 4 tokens of 64 each, no temporal position
        ptr_tokens = ptrs.reshape(-1, 1, 4, 64).permute(0, 2, 1, 3).flatten(0, 1)
        memory.append(ptr_tokens)
        memory_pos.append(torch.zeros_like(ptr_tokens))
        curr = _tensor(x["curr"])
        curr_pos = model.image_encoder.neck.position_encoding(curr)
        out = model.memory_attention(
            curr=[curr.flatten(2).permute(2, 0, 1)], curr_pos=[curr_pos.flatten(2).permute(2, 0, 1)],
            memory=torch.cat(memory), memory_pos=torch.cat(memory_pos), num_obj_ptr_tokens=ptr_tokens.shape[0],
            num_spatial_mem=len(task["tpos_rows"]),
        )
    return {"latents": torch.cat(memory[:-1], dim=0), "out": out.permute(1, 2, 0).reshape(curr.shape)}


def predict(model, x: dict, task: dict) -> dict:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    predictor.set_image(x["image"])
    result = {}
    for i, case in enumerate(task["cases"]):
        kw = {k: x.get(f"c{i}/{k}") for k in ("point_coords", "point_labels", "box", "mask_input")}
        masks, scores, logits = predictor.predict(multimask_output=bool(case["multimask"]), **kw)
        result |= {f"c{i}/masks": masks, f"c{i}/scores": scores, f"c{i}/logits": logits}
    return result


class _VideoDriver:
    """The official (SAM2 1.0-style, batched) EdgeTAM video predictor behind the verbs of
    tests/video/scenario.py; each call returns events (tag, frame, {obj_id: (mask, low-res logits)})."""

    def __init__(self, predictor, folder: str) -> None:
        import torch

        self.torch, self.pred = torch, predictor
        with torch.inference_mode():
            self.state = predictor.init_state(folder)

    def _low_res(self, frame: int, obj_id: int) -> np.ndarray:
        st = self.state
        idx = st["obj_id_to_idx"][obj_id]
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            entry = st["temp_output_dict_per_obj"][idx][key].get(frame)
            if entry is not None:
                return entry["pred_masks"][0, 0].float().numpy()
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            entry = st["output_dict"][key].get(frame)
            if entry is not None:
                return entry["pred_masks"][idx, 0].float().numpy()
        return np.full((256, 256), -1024.0, np.float32)

    def _event(self, tag: str, out) -> list:
        frame, obj_ids, video_masks = out
        return [(tag, int(frame), {int(o): (video_masks[i, 0].numpy() > 0, self._low_res(frame, o))
                                   for i, o in enumerate(obj_ids)})]

    def points(self, frame, obj_id, points, labels, clear_old_points=True):
        with self.torch.inference_mode():
            out = self.pred.add_new_points_or_box(self.state, frame, obj_id, points=np.asarray(points, np.float32),
                                                  labels=np.asarray(labels, np.int32), clear_old_points=clear_old_points)
        return self._event("points", out)

    def box(self, frame, obj_id, box, points=None, labels=None):
        with self.torch.inference_mode():
            out = self.pred.add_new_points_or_box(self.state, frame, obj_id, points=points, labels=labels,
                                                  box=np.asarray(box, np.float32))
        return self._event("box", out)

    def mask(self, frame, obj_id, mask):
        with self.torch.inference_mode():
            out = self.pred.add_new_mask(self.state, frame, obj_id, np.asarray(mask, bool))
        return self._event("mask", out)

    def propagate(self, start=None, reverse=False, max_frames=None):
        events = []
        with self.torch.inference_mode():
            for frame, obj_ids, video_masks in self.pred.propagate_in_video(self.state, start, max_frames, reverse):
                result = {}
                for i, oid in enumerate(obj_ids):
                    idx = self.state["obj_id_to_idx"][oid]
                    out = self.state["output_dict"]
                    entry = out["cond_frame_outputs"].get(frame) or out["non_cond_frame_outputs"][frame]
                    result[int(oid)] = (video_masks[i, 0].numpy() > 0, entry["pred_masks"][idx, 0].float().numpy().copy())
                events.append(("propagate", int(frame), result))
        return events


def video(model_unused, x: dict, task: dict) -> dict:
    """Run ``task["steps"]`` ([verb, kwargs] pairs; a mask prompt names its array) on the official video
    predictor (build_sam2_video_predictor, fp32 CPU) over the JPEG folder ``task["folder"]`` (<i>.jpg, the
    layout its loader reads). Events come back as e<i>/masks [O,H,W], e<i>/low_res [O,256,256] and
    ``events`` (JSON)."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor("configs/edgetam.yaml", ckpt_path=task["checkpoint"], device="cpu")
    _widen_bf16_memory(predictor)
    driver = _VideoDriver(predictor, task["folder"])
    events = []
    for verb, kwargs in task["steps"]:
        if verb == "mask":
            kwargs = {**kwargs, "mask": x[kwargs["mask"]]}
        events += getattr(driver, verb)(**kwargs)
    result: dict = {"events": np.asarray(json.dumps([(tag, frame, sorted(objs)) for tag, frame, objs in events]))}
    for i, (_, _, objs) in enumerate(events):
        ids = sorted(objs)
        result[f"e{i}/masks"] = np.stack([objs[o][0] for o in ids])
        result[f"e{i}/low_res"] = np.stack([objs[o][1] for o in ids])
    return result


def _widen_bf16_memory(predictor) -> None:
    """The official tracker stores memory in bfloat16 and relies on concatenation with the fp32 object
    pointers to widen it; with no pointer yet that fails in fp32 CPU inference. Widen it exactly as the
    concatenation does (same fix as tests/video/scenario.patch_official_bf16_memory for SAM2)."""
    attention = predictor.memory_attention
    original = attention.forward

    def forward(curr, memory, *args, **kwargs):
        return original(curr, memory.float(), *args, **kwargs)

    attention.forward = forward


KINDS = {"encode": encode, "memory_encode": memory_encode, "memory_attention": memory_attention,
         "memory_path": memory_path, "predict": predict, "video": video}


def main(argv: list[str]) -> int:
    checkpoint, request, out_path = argv
    import torch

    torch.set_num_threads(int(os.environ.get("EDGETAM_ORACLE_THREADS", "2")))
    _setup()
    t0 = time.perf_counter()
    model = build(checkpoint)
    print(f"[edgetam oracle] model built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    with np.load(request, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    tasks = json.loads(str(arrays.pop("__tasks__")))
    results: dict[str, np.ndarray] = {}
    for task in tasks:
        t1 = time.perf_counter()
        prefix = f"{task['id']}/"
        inputs = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        task = {**task, "checkpoint": checkpoint}
        for name, value in KINDS[task["kind"]](model, inputs, task).items():
            value = value.detach().float().numpy() if hasattr(value, "detach") else np.asarray(value)
            results[prefix + name] = value
        print(f"[edgetam oracle] {task['id']} ({task['kind']}) {time.perf_counter() - t1:.1f}s", file=sys.stderr)
    np.savez(out_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
