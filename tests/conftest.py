"""Real servers for the test suite, started lazily and once per session.

A session-scoped server starts only when the first test that needs it runs, so
``pytest tests/test_sqlite_only.py`` starts nothing. Per-test fixtures hand out clean state:

- ``postgres``           the EmbeddedPostgres (session): password auth on 127.0.0.1.
- ``pg_url``             URL of a fresh, empty database created for this test (dropped after).
- ``redis_server``       the standalone EmbeddedRedis (session, no AOF).
- ``redis_url``          its URL, after FLUSHALL.
- ``redis_cluster``      the 3-master EmbeddedRedisCluster (session).
- ``redis_cluster_url``  ``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``, after
                         FLUSHALL on every master.
- ``redis_stack``        an EmbeddedRedisStack (session): Redis 8 + RedisJSON + RediSearch,
                         password auth.
- ``langgraph_redis_url`` ``redis+langgraph://`` URL of it (the official saver), after FLUSHALL
                         (which drops its search indexes too).
- ``langgraph_redis_url_b`` the same on a second such server, for two official stores at once
                         (the saver's write registry keys ignore its prefix: two stores on one
                         server would share them).
- ``sqlite_path``        ``tmp_path / "store.sqlite"`` (not created).
- ``pg_url_factory``     ``pg_url_factory() -> url`` of another fresh database on each call
                         (e.g. one per hypothesis example); all are dropped after the test.

Hypothesis runs with ``deadline=None`` (the suite has no timing thresholds; a real server on a
shared 2-core machine is not a stopwatch), and derandomized when ``CI`` is set so a CI run is
reproducible.

The URLs carry the password: never print or log them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedRedisCluster, EmbeddedRedisStack

settings.register_profile("dualsaver", deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("dualsaver"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dualsaver")

_database_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A test that runs the CLI configures logging for the whole process (`configure_logging`:
    its level, its stream); the next test gets structlog's defaults back, so that what a test
    reads from its captured output does not depend on which tests ran before it."""
    yield
    structlog.reset_defaults()


def _database_name() -> str:
    return f"test_{os.getpid()}_{next(_database_numbers)}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = _database_name()
    url = postgres.create_database(name)
    yield url
    # WITH (FORCE) ends sessions a test left open (pools are closed by then normally).
    postgres.drop_database(name)


@pytest.fixture
def pg_url_factory(postgres: EmbeddedPostgres) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def new_database() -> str:
        names.append(_database_name())
        return postgres.create_database(names[-1])

    yield new_database
    for name in names:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedRedisCluster]:
    with EmbeddedRedisCluster(masters=3) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: EmbeddedRedisCluster) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_stack() -> Iterator[EmbeddedRedisStack]:
    with EmbeddedRedisStack(password="stack-secret") as server:
        yield server


@pytest.fixture(scope="session")
def redis_stack_b() -> Iterator[EmbeddedRedisStack]:
    with EmbeddedRedisStack(password="stack-secret-b") as server:
        yield server


@pytest.fixture
def langgraph_redis_url(redis_stack: EmbeddedRedisStack) -> str:
    redis_stack.flushall()
    return redis_stack.langgraph_url


@pytest.fixture
def langgraph_redis_url_b(redis_stack_b: EmbeddedRedisStack) -> str:
    redis_stack_b.flushall()
    return redis_stack_b.langgraph_url


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"


# The fast lane (`pytest -m "not slow"`, under 2 minutes on 2 cores) leaves out, besides the
# modules and tests marked slow where they are written, these end-to-end tests of the
# quick modules: each took 2-11 s on a loaded 2-core machine (`--durations`), together
# about half of what was left. The default command still runs them; so does CI.
SLOW_IN_QUICK_MODULES = {
    "test_secrets.py::test_no_password_in_any_output_of_any_command",
    "test_phase_control.py::test_refused_transitions_say_why_and_what_to_do",
    "test_phase_control.py::test_a_step_waits_for_replicas_still_on_the_previous_phase",
    "test_demo.py::test_demo_walks_every_phase_and_ends_clean",
    "test_demo.py::test_module_entry_point_matches_the_script",
    "test_check_live.py::test_check_beside_live_shadow_writes_reports_only_the_real_divergence",
    "test_setup_race.py::test_replicas_open_a_fresh_postgres_at_once",
    "test_setup_race.py::test_replicas_create_the_record_tables_at_once",
    "test_throttle.py::test_fleet_limits_reach_jobs_started_anywhere",
    "test_throttle.py::test_max_load_backs_off_while_a_lock_slows_the_target",
    "test_throttle.py::test_backfill_and_check_keep_to_the_rate",
    "test_throttle.py::test_fleet_limits_are_kept_while_the_control_store_is_away",
    "test_tiered.py::test_no_stale_read_and_nothing_acknowledged_lost",
    "test_tiered.py::test_check_between_the_tiers_reports_only_real_divergences",
    "test_embedded.py::test_redis_password_is_required_when_set",
    "test_check_cli.py::test_divergent_pair_exits_1_then_repair_makes_it_clean",
    "test_check_cli.py::test_the_command_line_entry_point",
    "test_check.py::test_planted_divergences_are_found_with_their_kind_and_nothing_else",
    "test_bad_rows.py::test_check_names_the_bad_rows_and_repair_leaves_them_to_a_person",
    "test_breaker.py::test_a_failed_secondary_is_skipped_then_probed_then_used_again",
    "test_factory.py::test_the_official_saver_by_factory",
    "test_factory.py::test_the_official_async_saver_by_async_factory",
    "test_langgraph_redis.py::test_corrupted_documents_are_reported_unreadable_and_the_rest_is_copied",
    "test_embedded.py::test_postgres_keeps_a_given_data_dir_across_restart",
    "test_stores.py::test_cli_bad_url_exits_2_with_one_line",
    "test_status.py::test_backfill_and_check_commands_record_their_outcome",
    "test_evidence.py::test_a_sharded_backfill_counts_as_whole_once_every_shard_is_in",
    # After the store-live, store-copy and first-hour merges the lane took 5m19s at load 6 (313 s
    # of pytest, `--durations`); these took 3.5-22 s each, nearly half of it. Each leaves a
    # quicker test of the same feature in the lane (mypy: run it yourself; ruff stays).
    "test_lint.py::test_mypy_finds_nothing",
    "test_items_cli.py::test_backfill_check_and_repair_of_the_store_alone_end_to_end",
    "test_items_cli.py::test_the_store_urls_come_from_the_command_line_and_the_environment",
    "test_items_resume.py::test_a_killed_backfill_run_again_ends_clean",
    "test_dual_store_model.py::test_dual_store_answers_like_the_model_in_every_phase",
    "test_cli_output.py::test_status_after_one_shard_of_two_says_partial",
    "test_cli_first_hour.py::test_read_switch_before_any_backfill_is_refused_as_such",
    "test_cli_first_hour.py::test_phase_set_records_who_from_the_system_when_the_environment_names_nobody",
    "test_cli_first_hour.py::test_a_factory_module_in_the_current_directory_is_found",
    "test_demo.py::test_help_names_the_workflow_and_the_examples",
    "test_phase_control.py::test_force_overrides_a_guard_loudly_and_is_recorded",
    "test_status.py::test_status_says_which_store_is_unreachable",
    "test_status.py::test_status_shows_phase_stores_journal_backfill_and_check",
    "test_check_bytes.py::test_async_check_compares_bytes_too",
    "test_report.py::test_html_report_in_a_real_headless_browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if name in SLOW_IN_QUICK_MODULES:
            item.add_marker(pytest.mark.slow)
