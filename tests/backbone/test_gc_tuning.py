"""Serving processes tune the cyclic garbage collector once started (``bootstrap.tune_gc_for_serving``)."""

import gc

from leadbridge_events import bootstrap


def test_tuning_freezes_the_started_heap_and_makes_young_collections_rarer() -> None:
    threshold = gc.get_threshold()
    try:
        bootstrap.tune_gc_for_serving()
        assert gc.get_freeze_count() > 1000  # the modules, models and schemas imported so far
        assert gc.get_threshold() == bootstrap.SERVING_GC_THRESHOLD
        assert gc.get_threshold()[0] > threshold[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_test_process_is_not_a_serving_one() -> None:
    assert not bootstrap._SERVING.is_set()  # only main() and a uvicorn worker's app_from_env() set it
