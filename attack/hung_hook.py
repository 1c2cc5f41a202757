"""A service whose shutdown hook hangs: after SIGTERM, do a second SIGTERM / SIGINT end it?
(EXIT_INTERRUPTED's docstring: "Exit status when a second SIGINT interrupts the process".)
Usage: python attack/hung_hook.py child   (the service) ; python attack/hung_hook.py  (the driver)"""
import asyncio, os, signal, subprocess, sys, time

if sys.argv[1:] == ["child"]:
    from creditrisk_kit import ServiceSettings
    from creditrisk_kit.service import Service, ServiceSpec, run_service

    async def hang() -> None:
        print("hook: hanging", flush=True)
        await asyncio.Event().wait()

    def build(settings):
        return Service(service_names=["x.X"], register=lambda s: None, shutdown_hooks=[hang])

    os.environ.update(SVC_PORT="0", SVC_GRACE_PERIOD_S="0.5", SVC_HOST="127.0.0.1")
    class Settings(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "SVC_"}
    run_service(ServiceSpec("hung", Settings, build))
    sys.exit(0)

child = subprocess.Popen([sys.executable, __file__, "child"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    time.sleep(4)
    child.send_signal(signal.SIGTERM); time.sleep(2)
    child.send_signal(signal.SIGTERM); time.sleep(1)
    child.send_signal(signal.SIGINT); time.sleep(1)
    child.send_signal(signal.SIGINT); time.sleep(2)
    alive = child.poll() is None
    print("BUG: still running after SIGTERM, SIGTERM, SIGINT, SIGINT (hung shutdown hook, no timeout)" if alive
          else f"OK: exited {child.returncode}")
finally:
    if child.poll() is None:
        child.kill()
    out = child.communicate()[0]
    print("\n".join(l[:160] for l in out.splitlines()[-6:]))
sys.exit(1 if alive else 0)
