"""SynthBins bookkeeping: counts specs, class-mix scaling, label order, ids, per-image generators."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.data.synth.plan import (
    UDACITY_MIX,
    class_plan,
    id_width,
    image_id,
    image_rng,
    label_order,
    parse_counts,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("0-8", list(range(9))),
        ("1,3,5", [1, 3, 5]),
        ("0", [0]),
        (" 7 , 0,2-3", [0, 2, 3, 7]),
        ("3,1-3", [1, 2, 3]),
        ("12", [12]),
    ],
)
def test_parse_counts_accepts_ranges_lists_zero_and_large(spec, expected):
    assert parse_counts(spec) == expected


@pytest.mark.parametrize("spec", ["", "5-1", "a", "1,,2", "-1", "1-b", "2.5"])
def test_parse_counts_rejects_bad_specs_quoting_them(spec):
    with pytest.raises(ValueError, match="counts"):
        parse_counts(spec)


def test_udacity_plan_at_report_size_is_the_report_mix():
    assert class_plan(10441, [1, 2, 3, 4, 5], "udacity") == UDACITY_MIX


@pytest.mark.parametrize("n", [0, 1, 7, 100, 999, 12345])
def test_udacity_plan_is_exact_and_proportional(n):
    plan = class_plan(n, [1, 2, 3, 4, 5], "udacity")
    assert sum(plan.values()) == n
    total = sum(UDACITY_MIX.values())
    for c, k in plan.items():
        assert abs(k - n * UDACITY_MIX[c] / total) < 1.0  # largest remainder: each within one of its exact share


def test_uniform_plan_gives_leftovers_to_smaller_counts():
    assert class_plan(10, [5, 1, 3], "uniform") == {1: 4, 3: 3, 5: 3}


def test_udacity_plan_gives_counts_outside_report_the_mean_share():
    plan = class_plan(6 * 1000, [0, 1, 2, 3, 4, 5, 8], "udacity")
    assert sum(plan.values()) == 6000
    mean = sum(UDACITY_MIX.values()) / 5
    total = sum(UDACITY_MIX.values()) + 2 * mean
    assert abs(plan[0] - 6000 * mean / total) < 1
    assert plan[0] == plan[8]
    assert plan[1] < plan[0] < plan[3]  # 1228 < 2088.2 < 2666


def test_label_order_is_a_deterministic_shuffle_of_the_plan():
    plan = {0: 3, 1: 5, 4: 2}
    a, b = label_order(plan, 1), label_order(plan, 1)
    assert a.tolist() == b.tolist()
    assert sorted(a.tolist()) == [0] * 3 + [1] * 5 + [4] * 2
    orders = {tuple(label_order(plan, s).tolist()) for s in range(6)}
    assert len(orders) > 1  # the seed changes the order
    assert label_order({1: 0}, 0).tolist() == []


def test_ids_are_zero_padded_and_widen_past_five_digits():
    assert id_width(12) == 5 and image_id(0, 5) == "00001" and image_id(11, 5) == "00012"
    assert id_width(99999) == 5 and id_width(100000) == 6 and image_id(99999, 6) == "100000"


def test_image_rng_depends_on_seed_and_index_only():
    a = image_rng(3, 10).integers(0, 2**31, size=4)
    assert np.array_equal(a, image_rng(3, 10).integers(0, 2**31, size=4))
    assert not np.array_equal(a, image_rng(3, 11).integers(0, 2**31, size=4))
    assert not np.array_equal(a, image_rng(4, 10).integers(0, 2**31, size=4))
