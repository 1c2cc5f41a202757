"""Malformed fast_scorer folders through OnnxScorer.from_dir / .tolerance / .predict_default.

The registry-gateway's registration catches (ValueError, KeyError) from from_dir and turns them into
FAILED_PRECONDITION "the fast scorer ... is not valid"; anything else escapes as INTERNAL. Needs
/tmp/onnx17 from attack/make_onnx.py. Run in the registry-gateway env.
"""
import json, math, shutil, sys, tempfile
from pathlib import Path
from creditrisk_model_artifacts.onnx_scorer import OnnxScorer

SRC = Path("/tmp/onnx17")
GOOD = {"inputs": {"a": "double", "b": "string"}, "tolerance": 1e-4}


def folder(scorer_json, model="good"):
    d = Path(tempfile.mkdtemp())
    if scorer_json is not None:
        (d / "scorer.json").write_text(scorer_json if isinstance(scorer_json, str) else json.dumps(scorer_json))
    if model:
        shutil.copy(SRC / f"{model}.onnx", d / "model.onnx")
    return d


CASES = {
    "scorer.json is a list": (folder([1, 2]), "from_dir"),
    "inputs is a list": (folder({"inputs": ["a", "b"]}), "from_dir"),
    "inputs is null": (folder({"inputs": None}), "from_dir"),
    "numeric_tensor is a list": (folder({**GOOD, "numeric_tensor": ["float"]}), "from_dir"),
    "scorer.json missing": (folder(None), "from_dir"),
    "model.onnx missing": (folder(GOOD, model=None), "from_dir"),
    "model.onnx not ONNX": (None, "garbage"),
    "tolerance 'abc'": (folder({**GOOD, "tolerance": "abc"}), "tolerance"),
    "tolerance [1]": (folder({**GOOD, "tolerance": [1]}), "tolerance"),
    "tolerance Infinity": (folder('{"inputs": {"a": "double", "b": "string"}, "tolerance": Infinity}'), "tolerance"),
    "tolerance -1": (folder({**GOOD, "tolerance": -1}), "tolerance"),
    "output [N,1] not [N,2]": (folder(GOOD, model="narrow"), "predict"),
    "NaN input": (folder(GOOD), "nan"),
    "text in a double column": (folder(GOOD), "text"),
}

bugs = 0
for label, (d, what) in CASES.items():
    try:
        if what == "garbage":
            d = folder(GOOD); (d / "model.onnx").write_bytes(b"not onnx")
        s = OnnxScorer.from_dir(d)
        if what == "tolerance":
            t = s.tolerance
            ok = t is not None and math.isfinite(t) and t >= 0
            print(f"{'OK ' if ok else 'BUG'}  {label}: tolerance {t} accepted" + ("" if ok else " (fidelity check becomes a no-op / meaningless)"))
            bugs += not ok
            continue
        if what == "predict":
            print("     predict:", s.predict_default({"a": [0.1], "b": ["x"]}))
        if what == "nan":
            r = s.predict_default({"a": [float("nan"), float("inf")], "b": ["x", None]})
            print(f"note {label}: {r} (NaN P(default) reaches the caller)")
            continue
        if what == "text":
            s.predict_default({"a": ["abc"], "b": ["x"]})
        print(f"BUG  {label}: accepted")
        bugs += 1
    except (ValueError, KeyError, OSError) as exc:
        print(f"OK   {label}: {type(exc).__name__} {str(exc)[:100]!r}")
    except Exception as exc:
        print(f"BUG  {label}: {type(exc).__name__} escapes (INTERNAL at registration) {str(exc)[:100]!r}")
        bugs += 1
sys.exit(1 if bugs else 0)
