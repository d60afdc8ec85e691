"""The contract is the only place artifact, tensor and dim names are written.

Every other module reads them from ``sam2edge.contract.artifacts`` (``Artifact``, ``Tensor``, the
``Dim`` objects), so renaming a tensor in the contract cannot pass export and then fail inside the
predictor. The scan looks at the ways a name *addresses* something: a subscript (``out["masks"]``),
a dict-display key, a comparison (``== "masks"``, ``in``), the first argument of ``get``/``infer``/
``pop``, and any string inside a module-level constant (``ENC_OUT = ("image_embed", ...)``,
``LIMIT_DIMS = {"max_batch": ("batch",)}``). The same words
used as argument names in messages (``name="image"``) are not addresses and are not flagged.
The apps (``cli/``, ``server/``) are left out: their JSON keys are their own formats. A module-level
constant of public *argument* names that happen to equal tensor names (``point_labels``) opts out with
``# names: api`` on its first line.
"""

from __future__ import annotations

import ast
from pathlib import Path

from sam2edge.contract.artifacts import ARTIFACTS

PACKAGE = Path(__file__).resolve().parents[2] / "sam2edge"
EXEMPT = ("contract", "cli", "server")


def contract_names() -> set[str]:
    names = set(ARTIFACTS)
    for spec in ARTIFACTS.values():
        names |= {t.name for t in (*spec.inputs, *spec.outputs)} | set(spec.dims())
    return names


def _addresses(tree: ast.AST, lines: list[str]) -> list[ast.Constant]:
    found: list[ast.AST] = []
    opted_out = {id(n) for stmt in getattr(tree, "body", ()) if isinstance(stmt, ast.Assign)
                 and "# names: api" in lines[stmt.lineno - 1] for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in opted_out:
            continue
        if isinstance(node, ast.Subscript):
            found.append(node.slice)
        elif isinstance(node, ast.Dict):
            found.extend(k for k in node.keys if k is not None)
        elif isinstance(node, ast.Compare):
            found.extend([node.left, *node.comparators])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in ("get", "infer", "pop", "setdefault"):
                found.append(node.args[0])
    for node in tree.body if isinstance(tree, ast.Module) else ():
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
            if id(node) not in opted_out:
                found.extend(n for n in ast.walk(node.value) if isinstance(n, ast.Constant))
    flat: list[ast.Constant] = []
    for node in found:  # a tuple of names in a comparison or subscript counts element by element
        items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        flat.extend(n for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return flat


def scan(root: Path, names: set[str]) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in EXEMPT:
            continue
        text = path.read_text()
        for const in _addresses(ast.parse(text), text.splitlines()):
            if const.value in names:
                out.append(f"{path.relative_to(root.parent)}:{const.lineno}: {const.value!r}")
    return out


def test_no_module_outside_the_contract_writes_a_contract_name():
    offenders = scan(PACKAGE, contract_names())
    assert not offenders, "read these names from sam2edge.contract.artifacts:\n" + "\n".join(offenders)


def test_the_scan_finds_each_way_of_addressing_a_tensor(tmp_path):
    """The scanner itself can fail: each addressing form below must be reported, the message argument not."""
    pkg = tmp_path / "pkg"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "runtime" / "bad.py").write_text(
        'OUT = ("masks", "iou_predictions")\n'
        'LIMITS = {"max_points": ("num_points",)}\n'
        'def f(out, runners, name="image"):\n'
        '    a = out["image_embed"]\n'
        '    b = {"point_coords": 1}\n'
        '    c = name == "prompt_decoder"\n'
        '    d = runners.get("memory_encoder")\n'
        '    e = runners["x"].infer("obj_ptrs")\n'
        '    g = "num_objects" in out\n'
        '    raise ValueError(f"{name} bad", "mask_input")\n'
    )
    found = {line.rsplit(" ", 1)[-1].strip("'") for line in scan(pkg, contract_names())}
    assert found == {"masks", "iou_predictions", "image_embed", "point_coords", "prompt_decoder", "memory_encoder",
                     "obj_ptrs", "num_objects", "num_points"}
