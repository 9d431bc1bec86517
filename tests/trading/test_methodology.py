"""The factor table and the arithmetic, checked by hand to the gram."""

import dataclasses
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from services.trading.methodology import (
    MATERIALS,
    BatchInputs,
    FactorTable,
    Policy,
    load_factor_table,
    quantify,
)

# The SHA-256 of the shipped v1 table. Credits were issued under v1, so v1.csv
# is never edited in place: a change is a new version, and this test fails.
V1_DIGEST = "15f7537cae57f4f78963afc7d593962345e89156eea6b89b2a11d6add396eb84"

POLICY = Policy(
    truck_class="diesel_truck_2t",
    coverage_threshold_permille=900,
    low_coverage_discount_permille=100,
    estimated_mass_discount_permille=200,
    buffer_permille=100,
)
OUTPUTS = {
    "concrete_mortar": 2000,
    "brick_tile": 1000,
    "metals": 150,
    "gypsum": 200,
    "plastics": 300,
    "wood": 400,
    "glass": 100,
    "residue_landfill": 800,
}


def inputs(**changes) -> BatchInputs:
    values = {
        "batch_id": "B-hand",
        "net_kg": 5000,
        "outputs": OUTPUTS,
        "distance_m": 23456,
        "coverage_permille": 1000,
        "mass_measured": True,
    }
    return BatchInputs(**{**values, **changes})


def test_every_factor_row_keeps_its_source_and_every_material_has_a_row():
    table = load_factor_table("v1")

    assert all(f.source and f.unit and f.note for f in table.factors.values())
    assert {f"avoided.{m}" for m in MATERIALS} <= set(table.factors)
    assert table.factors["transport.diesel_truck_2t"].unit == "kgCO2e/(t*km)"


def test_a_known_batch_is_quantified_as_by_hand():
    result = quantify(inputs(), load_factor_table("v1"), POLICY)

    # concrete 2000 kg x 2.18 g/kg, brick 1000 x 2.18, metals 150 x 1500,
    # gypsum 200 x 32.8; plastics, wood, glass and residue are credited at 0.
    assert result["terms"]["avoided_g"] == {
        "brick_tile": 2180,
        "concrete_mortar": 4360,
        "glass": 0,
        "gypsum": 6560,
        "metals": 225000,
        "plastics": 0,
        "residue_landfill": 0,
        "wood": 0,
    }
    assert result["terms"]["avoided_total_g"] == 238100
    # 23.456 km x 5 t x 0.286 kg/(t km) = 33542.08 g, a deduction rounded up.
    assert result["terms"]["transport_g"] == 33543
    # 5 t x 0.676 kg/t
    assert result["terms"]["plant_g"] == 3380
    # 5 % of the avoided emissions
    assert result["terms"]["leakage_g"] == 11905
    assert result["net_g"] == 238100 - 33543 - 3380 - 11905 == 189272
    assert result["discount_permille"] == 0
    assert result["creditable_g"] == 189272


def test_weak_data_is_discounted_and_the_discount_is_recorded():
    result = quantify(
        inputs(coverage_permille=850, mass_measured=False),
        load_factor_table("v1"),
        POLICY,
    )

    assert result["discount_permille"] == 300
    assert result["discount_reasons"] == ["low_telemetry_coverage", "estimated_mass"]
    # 189272 x 0.7 = 132490.4, rounded down
    assert result["creditable_g"] == 132490


def test_a_batch_that_emits_more_than_it_avoids_counts_against_the_total():
    result = quantify(
        inputs(outputs={"wood": 4000}, distance_m=50000),
        load_factor_table("v1"),
        POLICY,
    )

    assert result["net_g"] == -(50000 * 5000 * 286 // 1_000_000) - 3380
    assert result["creditable_g"] == result["net_g"]


@given(
    net_kg=st.integers(1, 40000),
    shares=st.lists(st.integers(0, 1000), min_size=8, max_size=8),
    distance_m=st.integers(0, 200000),
    coverage=st.integers(0, 1000),
    measured=st.booleans(),
)
def test_a_credit_is_never_rounded_up(net_kg, shares, distance_m, coverage, measured):
    total_share = sum(shares) or 1
    outputs = {
        m: net_kg * s // total_share for m, s in zip(MATERIALS, shares, strict=True)
    }
    batch = inputs(
        net_kg=net_kg,
        outputs=outputs,
        distance_m=distance_m,
        coverage_permille=coverage,
        mass_measured=measured,
    )
    table = load_factor_table("v1")
    result = quantify(batch, table, POLICY)

    def factor(key):
        return Fraction(table.factors[key].value)

    avoided = sum(kg * factor(f"avoided.{m}") for m, kg in outputs.items())
    exact = (
        avoided * (1 - factor("leakage.share_of_avoided"))
        - Fraction(distance_m * net_kg, 1000) * factor("transport.diesel_truck_2t")
        - net_kg * factor("plant.processing")
    )
    if exact > 0:
        exact *= Fraction(1000 - result["discount_permille"], 1000)
    assert result["creditable_g"] <= exact


def test_the_shipped_v1_table_is_frozen_by_its_digest():
    table = load_factor_table("v1")

    assert table.digest == V1_DIGEST
    assert quantify(inputs(), table, POLICY)["factor_table_sha256"] == V1_DIGEST


def test_an_edit_of_any_row_changes_the_table_digest():
    table = load_factor_table("v1")
    plant = table.factors["plant.processing"]
    edits = [
        dataclasses.replace(plant, value=Decimal("0.5")),
        dataclasses.replace(plant, source="elsewhere"),
        dataclasses.replace(plant, note="reworded"),
    ]

    digests = {
        FactorTable("v1", {**table.factors, plant.key: edit}).digest for edit in edits
    }

    assert V1_DIGEST not in digests
    assert len(digests) == len(edits)
