"""Stack files with values of the wrong TOML type: each must be a StackFileError naming the place,
never a TypeError / AttributeError traceback, and never silently accepted (argv split into letters)."""
import sys, tomllib
from pathlib import Path
from creditrisk_devstack.stackfile import StackFile, StackFileError

BASE = 'root = "."\n'
CASES = {
    "argv a string": '[[process]]\nname = "a"\nargv = "python -m http.server"\n',
    "ports a string": '[[process]]\nname = "a"\nargv = ["x"]\nports = "port"\n',
    "env a string": '[[process]]\nname = "a"\nargv = ["x"]\nenv = "A=1"\n',
    "defaults a list": 'defaults = []\n[[process]]\nname = "a"\nargv = ["x"]\n',
    "extends a list": '[[process]]\nname = "a"\nargv = ["x"]\n[[process]]\nname = "b"\nextends = ["a"]\n',
    "profile a string": 'profiles = ["p"]\n[[process]]\nname = "a"\nargv = ["x"]\nprofile = "p"\n',
    "name an int": '[[process]]\nname = 5\nargv = ["x"]\n',
    "timeout_s a word": '[[process]]\nname = "a"\nargv = ["x"]\ntimeout_s = "soon"\n',
    "process a table": '[process]\nname = "a"\nargv = ["x"]\n',
    "depends_on a string": '[[process]]\nname = "a"\nargv = ["x"]\n[[process]]\nname = "b"\nargv = ["y"]\ndepends_on = "a"\n',
    "profiles a string": 'profiles = "real"\n[[process]]\nname = "a"\nargv = ["x"]\n',
}
bugs = 0
for label, text in CASES.items():
    try:
        stack = StackFile.parse(tomllib.loads(BASE + text), Path("/tmp/x/stack.toml"))
        spec = stack.resolve_all()
        print(f"BUG  {label}: accepted: " + "; ".join(f"{p.name} argv={list(p.argv)}" for p in spec.processes)
              + f" ports={dict(spec.ports)} profiles={stack.profiles}")
        bugs += 1
    except StackFileError as exc:
        print(f"OK   {label}: {str(exc)[:110]}")
    except Exception as exc:
        print(f"BUG  {label}: {type(exc).__name__}: {exc}")
        bugs += 1
sys.exit(1 if bugs else 0)
