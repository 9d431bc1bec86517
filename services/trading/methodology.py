"""The versioned quantification methodology: factor tables and the arithmetic.

Every figure is in integer grams of CO2e. Credits are rounded down and
deductions rounded up, term by term, so a calculation never claims a gram
more than its inputs support. methodology.md explains each choice.
"""

import csv
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.problems import NotFound, Unprocessable
from shared.provenance import factor_table_digest

FACTORS_DIR = Path(__file__).resolve().parent / "factors"
VERSION_PATTERN = re.compile(r"^v[0-9]{1,4}$")
GRAMS_PER_TONNE = 1_000_000
PERMILLE = 1000
MATERIALS = (
    "concrete_mortar",
    "brick_tile",
    "wood",
    "plastics",
    "glass",
    "metals",
    "gypsum",
    "residue_landfill",
)
PLANT_KEY = "plant.processing"
LEAKAGE_KEY = "leakage.share_of_avoided"


@dataclass(frozen=True)
class Factor:
    key: str
    value: Decimal
    unit: str
    source: str
    note: str


@dataclass(frozen=True)
class FactorTable:
    version: str
    factors: dict[str, Factor]

    def value(self, key: str) -> Decimal:
        if key not in self.factors:
            raise Unprocessable(
                f"Factor table {self.version} has no factor '{key}'.",
                slug="factor-missing",
            )
        return self.factors[key].value

    def rows(self) -> dict[str, dict[str, str]]:
        """The whole table in the canonical form its digest is taken over."""
        return {
            key: {
                "value": str(factor.value),
                "unit": factor.unit,
                "source": factor.source,
                "note": factor.note,
            }
            for key, factor in sorted(self.factors.items())
        }

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical table; an in-place edit changes it."""
        return factor_table_digest(self.rows())

    def snapshot(self, keys: list[str]) -> dict[str, dict[str, str]]:
        """The rows a calculation used, copied into its record."""
        return {
            key: {
                "value": str(self.factors[key].value),
                "unit": self.factors[key].unit,
                "source": self.factors[key].source,
            }
            for key in keys
        }


@dataclass(frozen=True)
class Policy:
    """The conservativeness settings a calculation applies and records."""

    truck_class: str
    coverage_threshold_permille: int
    low_coverage_discount_permille: int
    estimated_mass_discount_permille: int
    buffer_permille: int
    truck_class_basis: str = "default"

    def as_dict(self) -> dict[str, Any]:
        return {
            "truck_class": self.truck_class,
            "truck_class_basis": self.truck_class_basis,
            "coverage_threshold_permille": self.coverage_threshold_permille,
            "low_coverage_discount_permille": self.low_coverage_discount_permille,
            "estimated_mass_discount_permille": self.estimated_mass_discount_permille,
            "buffer_permille": self.buffer_permille,
        }


@dataclass(frozen=True)
class BatchInputs:
    """What a sealed batch says, read from its verified ledger entries."""

    batch_id: str
    net_kg: int
    outputs: dict[str, int]
    distance_m: int
    coverage_permille: int
    mass_measured: bool
    vehicle_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "vehicle_id": self.vehicle_id,
            "net_kg": self.net_kg,
            "outputs": dict(sorted(self.outputs.items())),
            "distance_m": self.distance_m,
            "coverage_permille": self.coverage_permille,
            "mass_basis": "measured" if self.mass_measured else "estimated",
        }


def available_versions() -> list[str]:
    return sorted(path.stem for path in FACTORS_DIR.glob("v*.csv"))


@lru_cache
def load_factor_table(version: str) -> FactorTable:
    """Reads factors/<version>.csv; each row keeps its source."""
    path = FACTORS_DIR / f"{version}.csv"
    if not VERSION_PATTERN.match(version) or not path.exists():
        raise NotFound(f"There is no factor table '{version}'.", slug="no-such-factors")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    factors = {}
    for row in rows:
        try:
            value = Decimal(row["value"])
        except InvalidOperation as exc:
            raise ValueError(f"{path.name}: {row['key']} is not a number") from exc
        factors[row["key"]] = Factor(
            row["key"], value, row["unit"], row["source"], row["note"]
        )
    return FactorTable(version, factors)


def floor_grams(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def ceil_grams(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def inputs_from_dict(data: dict[str, Any]) -> BatchInputs:
    """BatchInputs back from the form a calculation or seal read stores."""
    return BatchInputs(
        batch_id=data["batch_id"],
        net_kg=data["net_kg"],
        outputs=dict(data["outputs"]),
        distance_m=data["distance_m"],
        coverage_permille=data["coverage_permille"],
        mass_measured=data["mass_basis"] == "measured",
        vehicle_id=data.get("vehicle_id"),
    )


def discount_for(inputs: BatchInputs, policy: Policy) -> tuple[int, list[str]]:
    """The weak-data discount (per mille) and the reasons behind it."""
    permille, reasons = 0, []
    if inputs.coverage_permille < policy.coverage_threshold_permille:
        permille += policy.low_coverage_discount_permille
        reasons.append("low_telemetry_coverage")
    if not inputs.mass_measured:
        permille += policy.estimated_mass_discount_permille
        reasons.append("estimated_mass")
    return min(permille, PERMILLE), reasons


def quantify(inputs: BatchInputs, table: FactorTable, policy: Policy) -> dict:
    """Computes a batch's reduction in grams; returns the terms and the factors."""
    transport_key = f"transport.{policy.truck_class}"
    avoided = {
        material: floor_grams(kg * table.value(f"avoided.{material}"))
        for material, kg in sorted(inputs.outputs.items())
    }
    avoided_total = sum(avoided.values())
    transport = ceil_grams(
        Decimal(inputs.distance_m * inputs.net_kg) * table.value(transport_key) / 1000
    )
    plant = ceil_grams(inputs.net_kg * table.value(PLANT_KEY))
    leakage = ceil_grams(max(avoided_total, 0) * table.value(LEAKAGE_KEY))
    net = avoided_total - transport - plant - leakage

    discount, reasons = discount_for(inputs, policy)
    creditable = net
    if net > 0:
        creditable = net * (PERMILLE - discount) // PERMILLE
    used = [f"avoided.{m}" for m in sorted(inputs.outputs)]
    return {
        "terms": {
            "avoided_g": avoided,
            "avoided_total_g": avoided_total,
            "transport_g": transport,
            "plant_g": plant,
            "leakage_g": leakage,
        },
        "net_g": net,
        "discount_permille": discount,
        "discount_reasons": reasons,
        "creditable_g": creditable,
        "factor_table_sha256": table.digest,
        "factors": table.snapshot([*used, transport_key, PLANT_KEY, LEAKAGE_KEY]),
    }
