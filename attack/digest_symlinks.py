"""sha256_tree over an artifact folder with symlinks: a link to a file outside the folder is hashed
(and would be loaded) through its target; a dangling link is skipped without a word, so "every file
has a digest" does not hold for links. Run in any env with creditrisk_model_artifacts."""
import os, sys, tempfile
from pathlib import Path
from creditrisk_model_artifacts.digests import sha256_tree

base = Path(tempfile.mkdtemp())
(base / "outside").mkdir(); (base / "outside" / "secret.txt").write_text("outside the tree\n")
tree = base / "model"; tree.mkdir(); (tree / "MLmodel").write_text("flavors: {}\n")
os.symlink(base / "outside" / "secret.txt", tree / "model.skops")
os.symlink("/nonexistent", tree / "conda.yaml")
keys = sha256_tree(tree, "model")
print("digests:", sorted(keys))
bugs = ("model/model.skops" in keys) + ("model/conda.yaml" not in keys)
print("BUG: symlinks followed outside the tree / dangling link ignored" if bugs else "OK")
sys.exit(1 if bugs else 0)
