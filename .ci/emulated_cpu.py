"""Run cnnpool on an emulated pre-AVX CPU and compare with this machine.

Usage: python .ci/emulated_cpu.py [CPU]      (CPU: a qemu model, default Nehalem)

Needs ``qemu-x86_64`` (Debian: ``apt-get install qemu-user``) and an
importable cnnpool (installed, or ``PYTHONPATH`` on a tree built in place).
Runs a few max/mean pooling and convolution layers, forward and backward,
three times: under ``qemu-x86_64 -cpu CPU`` (Nehalem: SSE4.2, no AVX), on
this CPU with ``CNNPOOL_CPU=baseline``, and on this CPU at its best level.
Checks that the emulated run loaded the baseline variant (a wrong variant
dies there with an illegal instruction) and that pooling gives the same
bits in all three; convolution agrees to float rounding (its BLAS picks
kernels per CPU).  Not part of .ci/run (CI machines lack qemu-user); run it
after changing setup.py's CPU levels.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = """
import json, sys
import numpy as np
import cnnpool as cp

rng = np.random.default_rng(3)
x = rng.standard_normal((2, 3, 12, 13)).astype(np.float32)
out = {}
for name, layer in (
    ("max3", cp.MaxPool2d(3, stride=2, padding=1)),
    ("max2", cp.MaxPool2d(2)),
    ("mean2", cp.MeanPool2d(2)),
    ("mean3", cp.MeanPool2d(3, stride=2, padding=1, ceil_mode=True)),
):
    for dt in (np.float32, np.float64):
        y = layer(x.astype(dt))
        out[f"{name}_{dt.__name__}_y"] = y
        # A gradient from exact arithmetic (np.cos differs per NumPy SIMD path).
        out[f"{name}_{dt.__name__}_gx"] = layer.backward(y * 0.5 + 0.25)
conv = cp.Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(1))
y = conv(x)
out["conv_y"], out["conv_gx"] = y, conv.backward(y * 0.5 + 0.25)
out["conv_gw"] = conv.weight.grad
np.savez(sys.argv[1], **out)
print(json.dumps(cp.show_config("dicts")["cpu"]))
"""


def run(prefix, out, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "CNNPOOL_CPU"}
    env.update(OMP_NUM_THREADS="1", **env_extra)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", WORKER, out],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode != 0:
        sys.exit(f"emulated_cpu: {' '.join(prefix) or 'host'} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    import numpy as np

    model = sys.argv[1] if len(sys.argv) > 1 else "Nehalem"
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            f"qemu -cpu {model}": (["qemu-x86_64", "-cpu", model], {}),
            "host, CNNPOOL_CPU=baseline": ([], {"CNNPOOL_CPU": "baseline"}),
            "host, best level": ([], {}),
        }
        results = {}
        for label, (prefix, env) in runs.items():
            path = str(Path(tmp, f"{len(results)}.npz"))
            cpu = run(prefix, path, env)
            print(f"{label}: level {cpu['level']} ({cpu['why']})")
            with np.load(path) as data:
                results[label] = (cpu, dict(data))
        emulated_cpu, emulated = results[f"qemu -cpu {model}"]
        problems = []
        if emulated_cpu["level"] != "baseline":
            problems.append(f"the emulated {model} loaded level {emulated_cpu['level']}")
        for label, (_, arrays) in results.items():
            for key, value in emulated.items():
                if key.startswith(("max", "mean")):
                    if not np.array_equal(value, arrays[key]):
                        problems.append(f"{key}: {model} and {label} differ")
                elif not np.allclose(value, arrays[key], rtol=1e-5, atol=1e-6):
                    problems.append(f"{key}: {model} and {label} differ beyond rounding")
    if problems:
        sys.exit("emulated_cpu: " + "; ".join(problems))
    print(f"emulated_cpu: {model} ran the baseline variant; pooling bit-identical, conv close")


if __name__ == "__main__":
    main()
