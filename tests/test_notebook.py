"""notebooks/quickstart.ipynb executed end to end in a Jupyter kernel (nbclient), with fewer training steps, so it
never rots: no cell fails, the sample grids, the comparison table, the report's images and TensorBoard show."""

import os
import signal
import sys
import time

import pytest

from tests.conftest import REPO, subprocess_env

REASON = "the notebook test needs nbformat, nbclient and ipykernel: pip install -e '.[test]'"
nbformat = pytest.importorskip("nbformat", reason=REASON)
nbclient = pytest.importorskip("nbclient", reason=REASON)
pytest.importorskip("ipykernel", reason=REASON)

NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")
STEPS = 20  # Per model, instead of the :quick budget of 300.
KERNEL_CHECK = "import sys\nprint('kernel python:', sys.executable)"


def _stop_tensorboards(logdir: str) -> None:
    """Ends the TensorBoard servers the notebook started on `logdir` (by pid, from TensorBoard's own records)."""
    from tensorboard import manager

    for info in manager.get_all():
        if info.logdir != logdir:
            continue
        try:
            os.kill(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(info.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)


def _texts(cell) -> str:
    """A code cell's printed text and text-like outputs, joined."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        for mime in ("text/plain", "text/markdown", "text/html"):
            parts.append(output.get("data", {}).get(mime, ""))
    return "\n".join(parts)


def _cell(notebook, source_part: str):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and source_part in c.source]
    return cell


def _pngs(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run in a kernel of this interpreter, in notebooks/, writing under a temporary folder."""
    work = str(tmp_path_factory.mktemp("notebook") / "quickstart")
    env = subprocess_env()  # One CPU device, this checkout importable.
    env.update(
        ANIMEJAX_NOTEBOOK_DIR=work,
        ANIMEJAX_NOTEBOOK_STEPS=str(STEPS),
        XDG_CACHE_HOME=os.path.join(os.path.dirname(work), "cache"),  # Decoded data and SWD statistics.
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),  # This venv's `tensorboard`.
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "save the notebook with its outputs cleared"
    notebook.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}
    )
    with pytest.MonkeyPatch.context() as patch:  # The kernel inherits this process's environment.
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            client.execute()
        finally:
            _stop_tensorboards(os.path.join(work, "runs"))
    return notebook, work


def test_notebook_runs_without_errors_in_this_interpreter(executed):
    notebook, work = executed
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert f"kernel python: {sys.executable}" in _texts(_cell(notebook, KERNEL_CHECK))
    for name in ("vae", "dcgan"):
        checkpoints = os.listdir(os.path.join(work, "runs", name, "checkpoints"))
        assert str(STEPS) in checkpoints, (name, checkpoints)
    assert "ConfigError: train.num_step:" in _texts(_cell(notebook, "except ConfigError"))


def test_notebook_shows_grids_table_and_tensorboard(executed):
    notebook, work = executed
    samples = _cell(notebook, "animejax.sample(")
    assert _pngs(samples) >= 4, _texts(samples)  # VAE: prior, latent-Gaussian, interpolations; DCGAN: two.
    text = _texts(samples)
    assert "**vae**" in text and "**dcgan**" in text

    table = _texts(_cell(notebook, "animejax.compare("))
    assert "| run |" in table and "| vae |" in table and "| dcgan |" in table, table
    assert os.path.exists(os.path.join(work, "report", "report.md"))

    report_images = _cell(notebook, '"grids", "*.png"')
    assert _pngs(report_images) >= 4
    assert "plots/swd.png" in _texts(report_images)  # The in-training SWD of both runs.

    board = _texts(_cell(notebook, "%tensorboard"))
    assert "<iframe" in board and "const port = " in board and "ERROR" not in board, board
    assert os.path.join(work, "runs") in _texts(_cell(notebook, "notebook.list()"))
