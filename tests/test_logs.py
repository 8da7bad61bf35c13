"""netdyn.logs.logged, the workflow scripts' wrapper: output to the job's log, one error line, a cheap exit."""

import subprocess
import sys


def run_job(tmp_path, body):
    script = tmp_path / "job.py"
    lines = ["import gc, sys", "from netdyn.logs import logged", "try:", "    with logged(sys.argv[1]):"]
    lines += [" " * 8 + line for line in body.splitlines()]
    lines += ["finally:", '    print("frozen", gc.get_freeze_count(), file=sys.__stdout__)']
    script.write_text("\n".join(lines) + "\n")
    log = tmp_path / "logs" / "job.log"
    result = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=60)
    return result, log


def test_output_goes_to_the_log_and_the_objects_are_frozen_for_exit(tmp_path):
    result, log = run_job(tmp_path, 'print("working")\nkept = [object() for _ in range(1000)]')
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "working\n"
    assert int(result.stdout.split()[-1]) >= 1000  # the live objects skip the interpreter's final collection


def test_an_error_is_one_line_naming_the_log_with_the_traceback_in_it(tmp_path):
    result, log = run_job(tmp_path, 'raise ValueError("config key x: not a number")')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"netdyn error (log: {log}): ValueError: config key x: not a number"]
    text = log.read_text()
    assert "Traceback" in text and text.splitlines()[-1] == "ValueError: config key x: not a number"
    assert int(result.stdout.split()[-1]) > 0  # frozen on the way out of a failure too
