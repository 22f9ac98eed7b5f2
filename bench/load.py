"""wrk, pinned to the load core, and the Lua scripts that shape its requests."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stack import LOAD_CORE

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    rate: float  # requests per second
    requests: int
    p50_ms: float | None = None
    p99_ms: float | None = None


def wrk(url: str, *, seconds: int, connections: int, lua: Path | None = None, latency: bool = False,
        core: str | None = LOAD_CORE, threads: int = 1) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    if core is not None:
        command[:0] = ["taskset", "-c", core]
    if lua is not None:
        command += ["-s", str(lua)]
    if latency:
        command.append("--latency")
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed:
        raise RuntimeError(f"{url}: {failed.group(1)} failed responses\n{output}")
    result = WrkResult(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
                       int(re.search(r"(\d+) requests in", output).group(1)))
    if latency:
        result.p50_ms, result.p99_ms = (_percentile(output, p) for p in ("50", "99"))
    return result


def _percentile(output: str, percent: str) -> float:
    value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(value) * _UNITS[unit]


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def post_script(path: Path, body: str, authorization: str) -> Path:
    """Every request the same form POST."""
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "{authorization}"\n')
    return path


def feed_script(path: Path, values: list[str], *, method: str, body: str | None = None,
                header: str | None = None, authorization: str | None = None) -> Path:
    """Each request takes the next value of `values` (one a line in a file beside the script),
    as `%s` in the form `body` or in the `header` ("Name: ...%s..."): single-use tokens and
    distinct sessions. Past the end it starts again, and a reused token fails the run loudly."""
    values_file = path.with_suffix(".txt")
    values_file.write_text("\n".join(values) + "\n")
    lines = [f'local values = {{}}\nfor line in io.lines("{values_file}") do values[#values + 1] = line end',
             "local next_value = 0", f'wrk.method = "{method}"']
    if authorization:
        lines.append(f'wrk.headers["Authorization"] = "{authorization}"')
    if body is not None:
        lines.append('wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"')
    lines.append("request = function()\n  next_value = next_value % #values + 1\n"
                 "  local value = values[next_value]")
    if body is not None:
        before, after = body.split("%s")
        lines.append(f'  return wrk.format(nil, nil, nil, "{before}" .. value .. "{after}")')
    else:
        name, template = header.split(": ", 1)
        before, after = template.split("%s")
        lines.append(f'  wrk.headers["{name}"] = "{before}" .. value .. "{after}"\n'
                     "  return wrk.format(nil, nil, nil, nil)")
    lines.append("end\n")
    path.write_text("\n".join(lines))
    return path


def paired(ours: Callable[[int], WrkResult], floor: Callable[[int], WrkResult], seconds: int) -> tuple[float, float]:
    """(ours, floor) requests per second, measured floor, ours, ours, floor for half the time
    each: a change in what else the machine runs falls on both alike."""
    half = max(1, seconds // 2)
    first_floor, first, second, last_floor = floor(half), ours(half), ours(half), floor(half)
    return (first.rate + second.rate) / 2, (first_floor.rate + last_floor.rate) / 2
