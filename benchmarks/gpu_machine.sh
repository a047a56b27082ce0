# shellcheck shell=bash
# Sourced by the scripts that run on the GPU machine (gpu_suite.sh, gpu_real_run.sh), from the repository root:
# installs the wheels carried in .whl/ (benchmarks/gpu_wheels.sh; WHEELS names another folder) into /tmp/site for
# the interpreter $PYTHON (default python3) and puts them on PYTHONPATH, unbuffers Python's output, and defines
# gpu_line (the GPU's name, memory and driver; nothing where there is no GPU).
python=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1

gpu_line() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
}
