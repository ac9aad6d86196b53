"""Pipelines as plain functions: Dag, @dag.task, inferred dependencies, mapping."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from helpers import WAIT

import daguerreo_actors as d
from daguerreo_actors import JobState, TaskState


class _Api(http.server.BaseHTTPRequestHandler):
    """/stations lists three; /readings/<s> answers 503 once for "b", then the readings."""

    failed_once: ClassVar[set[str]] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts == ["stations"]:
            self._answer(200, ["a", "b", "c"])
        elif parts[0] == "readings" and len(parts) == 2:
            station = parts[1]
            with self.lock:
                first = station == "b" and station not in self.failed_once
                self.failed_once.add(station)
            if first:
                self._answer(503, {"error": "busy"})
            else:
                self._answer(
                    200, {"station": station, "temp": {"a": 1.0, "b": 3.0, "c": 8.0}[station]}
                )
        else:
            self._answer(404, {})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    _Api.failed_once = set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def weather_dag() -> d.Dag:
    # The README's example, as written there.
    dag = d.Dag()

    @dag.task
    def stations(api_url: str) -> list[str]:
        result: list[str] = get_json(f"{api_url}/stations")
        return result

    @dag.task(map_over="stations", map_as="station", retry=d.RetryPolicy(delay=0.5), timeout=5)
    def readings(station: str, api_url: str) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{api_url}/readings/{station}")
        return result

    @dag.task(outputs=("mean", "max"))
    def stats(readings: list[dict[str, Any]]) -> tuple[float, float]:
        temps = [r["temp"] for r in readings]
        return sum(temps) / len(temps), max(temps)

    return dag


def test_the_readme_pipeline_runs_against_a_local_http_api(api: str) -> None:
    events: list[d.Event] = []
    job = weather_dag().run(ctx={"api_url": api}, max_concurrency=8, listeners=[events.append])
    result = job.get(timeout=WAIT)
    assert result.state is JobState.COMPLETED, result
    assert result.ctx["stations"] == ["a", "b", "c"]
    assert [r["station"] for r in result.ctx["readings"]] == ["a", "b", "c"]
    assert result.ctx["mean"] == 4.0
    assert result.ctx["max"] == 8.0
    assert result.attempts["readings[1]"] == 2  # the 503 was retried
    assert result.attempts["readings[0]"] == 1
    assert result.task_states["readings"] is TaskState.COMPLETED


def test_dependencies_are_inferred_from_parameters() -> None:
    tasks = {t.name: t for t in weather_dag().validate(["api_url"])}
    assert tasks["stations"].dependencies == frozenset()
    assert tasks["readings"].dependencies == frozenset({"stations"})
    assert tasks["readings"].map_over == "stations"
    assert tasks["readings"].map_as == "station"
    assert tasks["readings"].timeout == 5.0
    assert tasks["stats"].dependencies == frozenset({"readings"})


def test_missing_inputs_duplicate_outputs_and_bad_fields_are_reported_all_at_once() -> None:
    dag = d.Dag()

    @dag.task
    def stations(api_url: str) -> list[str]:
        return []

    @dag.task(name="stations_again", outputs=("stations",))
    def stations_copy(api_ur: str) -> tuple[list[str]]:
        return ([],)

    @dag.task(map_over="stations")
    def fetch(station: str) -> int:  # no parameter "item"
        return 1

    @dag.task(timeout=-1, colour="red")
    def report(staions: list[str], fetch: list[int]) -> None:
        pass

    with pytest.raises(d.InvalidTasksError) as caught:
        dag.validate(["api_url"])
    found = sorted((e.code, e.task) for e in caught.value.errors)
    assert ("duplicate-output", "stations_again") in found
    assert ("missing-input", "stations_again") in found
    assert ("missing-input", "report") in found
    assert ("invalid-field", "fetch") in found
    assert ("invalid-field", "report") in found
    assert ("missing-input", "fetch") in found  # "station" is its input, not the item
    text = str(caught.value)
    assert "did you mean 'api_url'" in text
    assert "did you mean 'stations'" in text
    assert "'map_as'" in text
    assert "'colour'" in text
    assert "'timeout'" in text
    # dag.run reports the same, before anything starts.
    with pytest.raises(d.InvalidTasksError) as again:
        dag.run(ctx={"api_url": "x"})
    assert len(again.value.errors) == len(caught.value.errors)


def test_decorated_functions_stay_callable_as_themselves() -> None:
    dag = d.Dag()

    @dag.task(outputs=("low", "high"))
    def bounds(values: list[int]) -> tuple[int, int]:
        return min(values), max(values)

    assert bounds([3, 1, 2]) == (1, 3)
    [task] = dag.tasks
    result = d.run(dag.tasks, ctx={"values": [5, 9]}).get(timeout=WAIT)
    assert task.name == "bounds"
    assert (result.ctx["low"], result.ctx["high"]) == (5, 9)


def test_a_wrong_number_of_outputs_is_invalid_result_naming_the_task_never_retried(
    logs: Any,
) -> None:
    dag = d.Dag()
    calls: list[int] = []

    @dag.task(outputs=("a", "b"), max_retries=3)
    def pair() -> tuple[int, ...]:
        calls.append(1)
        return (1, 2, 3)

    result = dag.run().get(timeout=WAIT)
    assert result.failed_task == "pair"
    assert result.task_states["pair"] is TaskState.INVALID_RESULT
    assert result.invalid_result == (1, 2, 3)
    [entry] = [e for e in logs if e.get("new_state") == "invalid_result"]
    assert "task 'pair' declares outputs=('a', 'b')" in entry["error"]
    assert "3 values" in entry["error"]
    assert calls == [1]


def test_a_ctx_with_keys_that_are_not_str_still_gets_did_you_mean() -> None:
    dag = d.Dag()

    @dag.task
    def a(api_url: str) -> int:
        return 1

    with pytest.raises(d.InvalidTasksError, match=r"did you mean 'api_ur'\?"):
        dag.validate({1: 2, ("t",): 3, "api_ur": 1})


def test_a_function_with_no_name_needs_name_and_outputs() -> None:
    import functools

    def base(x: int, y: int) -> tuple[int]:
        return (x + y,)

    dag = d.Dag()
    dag.task(functools.partial(base, 1))
    with pytest.raises(d.InvalidTasksError, match=r"no __name__.*give it name= and outputs="):
        dag.validate(["y"])
    named = d.Dag()
    named.task(name="add", outputs=("sum",))(functools.partial(base, 1))
    assert named.run(ctx={"y": 2}).get(timeout=WAIT).ctx["sum"] == 3


def test_defaults_is_active_and_async_functions() -> None:
    dag = d.Dag()
    seen: list[bool] = []

    @dag.task
    def base(scale: int = 3) -> int:
        return scale

    @dag.task
    async def doubled(base: int, is_active: Callable[[], bool]) -> int:
        seen.append(is_active())
        await asyncio.sleep(0)
        return base * 2

    result = dag.run().get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.ctx["doubled"] == 6
    assert seen == [True]


def test_a_dag_task_mapped_over_another_mapped_tasks_output() -> None:
    dag = d.Dag()

    @dag.task
    def words() -> list[str]:
        return ["ab", "cde", ""]

    @dag.task(map_over="words", map_as="word")
    def lengths(word: str) -> int:
        return len(word)

    @dag.task(map_over="lengths", map_as="n")
    def stars(n: int, mark: str) -> str:
        return mark * n

    result = dag.run(ctx={"mark": "*"}).get(timeout=WAIT)
    assert result.state is JobState.COMPLETED
    assert result.ctx["lengths"] == [2, 3, 0]
    assert result.ctx["stars"] == ["**", "***", ""]
    assert result.task_states["stars[2]"] is TaskState.COMPLETED


def test_a_mapped_dag_task_over_nothing_has_its_output_key_with_an_empty_list() -> None:
    dag = d.Dag()

    @dag.task(map_over="nothing")
    def each(item: int) -> int:
        return item

    @dag.task
    def count(each: list[int]) -> int:
        return len(each)

    result = dag.run(ctx={"nothing": []}).get(timeout=WAIT)
    assert result.ctx["each"] == []
    assert result.ctx["count"] == 0
