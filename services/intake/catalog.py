"""EWC chapter 17 (construction and demolition waste) and sorting materials."""

CHAPTER_17 = {
    "17 01 01": "concrete",
    "17 01 02": "bricks",
    "17 01 03": "tiles and ceramics",
    "17 01 06*": "mixtures of concrete, bricks, tiles and ceramics containing "
    "dangerous substances",
    "17 01 07": "mixtures of concrete, bricks, tiles and ceramics",
    "17 02 01": "wood",
    "17 02 02": "glass",
    "17 02 03": "plastic",
    "17 02 04*": "glass, plastic and wood containing dangerous substances",
    "17 03 01*": "bituminous mixtures containing coal tar",
    "17 03 02": "bituminous mixtures",
    "17 03 03*": "coal tar and tarred products",
    "17 04 01": "copper, bronze, brass",
    "17 04 02": "aluminium",
    "17 04 03": "lead",
    "17 04 04": "zinc",
    "17 04 05": "iron and steel",
    "17 04 06": "tin",
    "17 04 07": "mixed metals",
    "17 04 09*": "metal waste contaminated with dangerous substances",
    "17 04 10*": "cables containing oil, coal tar and other dangerous substances",
    "17 04 11": "cables",
    "17 05 03*": "soil and stones containing dangerous substances",
    "17 05 04": "soil and stones",
    "17 05 05*": "dredging spoil containing dangerous substances",
    "17 05 06": "dredging spoil",
    "17 05 07*": "track ballast containing dangerous substances",
    "17 05 08": "track ballast",
    "17 06 01*": "insulation materials containing asbestos",
    "17 06 03*": "insulation materials containing dangerous substances",
    "17 06 04": "insulation materials",
    "17 06 05*": "construction materials containing asbestos",
    "17 08 01*": "gypsum-based construction materials contaminated with "
    "dangerous substances",
    "17 08 02": "gypsum-based construction materials",
    "17 09 01*": "construction and demolition wastes containing mercury",
    "17 09 02*": "construction and demolition wastes containing PCB",
    "17 09 03*": "construction and demolition wastes containing dangerous substances",
    "17 09 04": "mixed construction and demolition wastes",
}

# The EWC codes each sorting output may carry.
MATERIALS: dict[str, frozenset[str]] = {
    "concrete_mortar": frozenset({"17 01 01", "17 01 07"}),
    "brick_tile": frozenset({"17 01 02", "17 01 03", "17 01 07"}),
    "wood": frozenset({"17 02 01"}),
    "plastics": frozenset({"17 02 03"}),
    "glass": frozenset({"17 02 02"}),
    "metals": frozenset(
        {"17 04 01", "17 04 02", "17 04 03", "17 04 04", "17 04 05", "17 04 06"}
        | {"17 04 07", "17 04 11"}
    ),
    "gypsum": frozenset({"17 08 02"}),
    "residue_landfill": frozenset(CHAPTER_17),
}


def unknown_codes(codes: list[str]) -> list[str]:
    """The codes in a list that are not EWC chapter 17 codes."""
    return [code for code in codes if code not in CHAPTER_17]
