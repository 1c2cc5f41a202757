"""--set profile=/root=/name= override the stack file's built-ins, inconsistently with the profile
actually chosen: the env says "real" while the real profile's overlays are not applied."""
import sys
from pathlib import Path
from creditrisk_devstack import read_stack_file
from creditrisk_devstack.stackfile import StackFileError

stack = read_stack_file(Path(__file__).resolve().parents[1] / "deploy/stack/local.toml")
bugs = 0
for var in ({"profile": "real"}, {"root": "/tmp/elsewhere"}):
    try:
        spec = stack.resolve("feature-service", variables=var).spec
        print(f"BUG  --set {var}: accepted; argv[0]={spec.argv[0]} cwd={spec.cwd} "
              f"FEATURE_SERVICE_PROFILE={spec.env.get('FEATURE_SERVICE_PROFILE')} "
              f"FEATURE_SERVICE_PROJECT={spec.env.get('FEATURE_SERVICE_PROJECT')}")
        bugs += 1
    except StackFileError as exc:
        print(f"OK   --set {var}: {exc}")
sys.exit(1 if bugs else 0)
