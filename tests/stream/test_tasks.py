"""Loading task directories, with and without triggers; pipelines run inside the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.task import TaskError, load_task

from .conftest import IPV_DIR, ev

PIPELINE_TASK = '''
from walle_core.stream.operators import Count, Pipeline, Tumbling

def pipelines():
    return [Pipeline("clicks").filter(lambda e: e["id"] == "click")
            .key_by(lambda e: e["user"]).window(Tumbling(100)).aggregate(Count())]
'''


def test_ipv_task_loads() -> None:
    task = load_task(IPV_DIR)
    assert task.name == "ipv_feature" and task.trigger is not None
    assert task.trigger.within_ms == 2 * 3_600_000


def test_pipeline_only_task(tmp_path: Path) -> None:
    (tmp_path / "task.toml").write_text('name = "clicks"\n')
    (tmp_path / "task.py").write_text(PIPELINE_TASK)
    rt = StreamRuntime([load_task(tmp_path)])
    for ts in (1, 50, 120, 130):
        rt.process(ev("u", "click", ts))
    rt.finish()
    assert [r["value"] for r in rt.store.features()] == [2, 2]


def test_task_errors(tmp_path: Path) -> None:
    (tmp_path / "task.toml").write_text('[trigger]\npattern = "a **"\n')
    (tmp_path / "task.py").write_text("def on_match(m):\n    return []\n")
    with pytest.raises(TaskError, match="bad \\[trigger\\]"):
        load_task(tmp_path)
    (tmp_path / "task.toml").write_text('[trigger]\npattern = "a"\n')
    (tmp_path / "task.py").write_text("x = 1\n")
    with pytest.raises(TaskError, match="no on_match"):
        load_task(tmp_path)


def test_failing_handler_is_contained(tmp_path: Path) -> None:
    (tmp_path / "task.toml").write_text('name = "boom"\n[trigger]\npattern = "a"\n')
    (tmp_path / "task.py").write_text("def on_match(m):\n    raise RuntimeError('x')\n")
    rt = StreamRuntime([load_task(tmp_path), load_task(IPV_DIR)])
    rt.process(ev("u", "a", 1))
    rt.process(ev("u", "page_enter", 2, "item_detail", item_id="i"))
    rt.process(ev("u", "page_exit", 3, "item_detail", item_id="i"))
    assert rt.stats.handler_errors == 1 and rt.store.count_features() == 1
