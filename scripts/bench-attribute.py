"""Share of an Envoy worker's CPU samples spent inside Wasm, per perf.data file.

A sample counts as "in Wasm" when its call stack has a JIT frame (V8's generated code);
"self" when the innermost frame is one (the module's own code), "hostcalls" otherwise
(Envoy code called from the module). Only Envoy worker threads ("wrk:worker_*") count.
"""
import subprocess
import sys


def stacks(path):
    text = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,ip,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if lines:
            yield lines[0], lines[1:]


def is_jit(frame):
    return "[JIT]" in frame or "/perf-" in frame


def main(paths):
    print(f"{'case':<22} {'worker samples':>14} {'in Wasm':>8} {'self':>6} {'hostcalls':>10}")
    for path in paths:
        worker = in_wasm = own = 0
        for comm, frames in stacks(path):
            if not comm.startswith("wrk:worker"):
                continue
            worker += 1
            if any(is_jit(frame) for frame in frames):
                in_wasm += 1
                if frames and is_jit(frames[0]):
                    own += 1
        name = path.rsplit("/", 1)[-1].removesuffix(".perf")
        if worker == 0:
            print(f"{name:<22} no worker samples")
            continue
        pct = lambda n: f"{100 * n / worker:.1f}%"
        print(f"{name:<22} {worker:>14} {pct(in_wasm):>8} {pct(own):>6} {pct(in_wasm - own):>10}")


if __name__ == "__main__":
    main(sys.argv[1:])
