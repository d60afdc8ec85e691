"""Our networks vs the official sam2 package, same random weights, same process, CPU.

    python benchmarks/model_cpu.py [--variant sam2.1_hiera_tiny] [--runs 5] [--threads 2]

Times the image encoder (image -> image_embed + high-res features, what set_image computes)
and the prompt encoder + mask decoder for one click and for a box, median of ``--runs``.
Prints a table with ratios (official / ours: > 1 means we are faster) and writes
benchmarks/results/model_cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, time_it, write_json  # noqa: E402
from sam2edge.model import build_model  # noqa: E402
from tests.oracle import official_model, preprocess_exact, test_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="sam2.1_hiera_tiny")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    official = official_model(args.variant)
    ours = build_model(args.variant)
    ours.load_state_dict(official.state_dict(), strict=True)
    x = preprocess_exact(test_images()["astronaut"])

    @torch.inference_mode()
    def official_encode():
        out = official.forward_image(x)
        _, feats, _, _ = official._prepare_backbone_features(out)
        return feats[-1] + official.no_mem_embed

    @torch.inference_mode()
    def ours_encode():
        return ours.encode_image(x)

    with torch.inference_mode():
        feats = ours.encode_image(x)
    pts = torch.tensor([[[500.0, 400.0]]])
    lab = torch.tensor([[1]], dtype=torch.int32)
    box = torch.tensor([[[200.0, 150.0], [700.0, 650.0]]])
    box_lab = torch.tensor([[2, 3]], dtype=torch.int32)

    def official_decode(coords, labels, multimask):
        @torch.inference_mode()
        def run():
            sparse, dense = official.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            return official.sam_mask_decoder(
                image_embeddings=feats.image_embed, image_pe=official.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
                repeat_image=False, high_res_features=[feats.high_res_feats_0, feats.high_res_feats_1])
        return run

    def ours_decode(coords, labels):
        @torch.inference_mode()
        def run():
            return ours.decode_prompts(feats.image_embed, feats.high_res_feats_0, feats.high_res_feats_1, coords, labels)
        return run

    rows, payload = [], {"variant": args.variant, "runs": args.runs, "results": {}}
    cases = [
        ("image encoder (1024²)", official_encode, ours_encode),
        ("decoder: 1 click, 3 masks", official_decode(pts, lab, True), ours_decode(pts, lab)),
        ("decoder: box, 1 mask", official_decode(box, box_lab, False), ours_decode(box, box_lab)),
    ]
    for name, off_fn, our_fn in cases:
        runs = args.runs
        t_off = time_it(off_fn, runs=runs)
        t_our = time_it(our_fn, runs=runs)
        ratio = t_off["median_ms"] / t_our["median_ms"]
        rows.append([name, t_off["median_ms"], t_our["median_ms"], f"{ratio:.2f}x"])
        payload["results"][name] = {"official": t_off, "ours": t_our, "speedup": ratio}
    print_table(f"{args.variant}, CPU fp32, {torch.get_num_threads()} threads, median of {args.runs} (ms)",
                ["network", "official", "ours", "official/ours"], rows)
    write_json("model_cpu", payload)


if __name__ == "__main__":
    main()
