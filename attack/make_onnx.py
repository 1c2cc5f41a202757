"""Tiny ONNX graphs for the scorer attacks (run in the training-service env: it has onnx)."""
import sys
from pathlib import Path
import onnx
from onnx import TensorProto, helper

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
b = helper.make_tensor_value_info("b", TensorProto.STRING, [None, 1])
two = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
one = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])
good = helper.make_graph([helper.make_node("Concat", ["a", "a"], ["probabilities"], axis=1)], "g", [a, b], [two])
narrow = helper.make_graph([helper.make_node("Identity", ["a"], ["probabilities"])], "g", [a, b], [one])
for name, graph in (("good", good), ("narrow", narrow)):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / f"{name}.onnx")
print("ok")
