"""The catalogue, product mixes, purchase volumes and interaction kinds as numpy lookups.

Derived once from `coefficients` (which holds the numbers); indexed by product, slot, segment or
interaction kind in the vectorised simulation.
"""

from __future__ import annotations

import numpy as np

from churn_risk.demo.coefficients import (
    ADOPTION_FAMILIES,
    CATALOG,
    HOLDINGS,
    INTERACTION_KINDS,
    INTERACTIONS,
    PURCHASES,
    SUBSCRIPTION_FAMILIES,
)
from churn_risk.features.contract import CHANNELS

PRODUCT_IDS = np.array([p[0] for p in CATALOG], dtype=object)
PRODUCT_NAMES = np.array([p[1] for p in CATALOG], dtype=object)
PRODUCT_FAMILY = np.array([p[2] for p in CATALOG], dtype=object)
PRICE = np.array([p[3] for p in CATALOG])
PHYSICAL = np.isin(PRODUCT_FAMILY, ("hardware", "accessories"))


def family_products(family: str) -> np.ndarray:
    """Catalogue indices of the products of `family`."""
    return np.array([i for i, p in enumerate(CATALOG) if p[2] == family], dtype=np.int64)


#: Subscription slot per adoption family (-1: hardware, a purchase).
ADOPTION_SLOT: tuple[int, ...] = tuple(
    SUBSCRIPTION_FAMILIES.index(f) if f in SUBSCRIPTION_FAMILIES else -1 for f in ADOPTION_FAMILIES
)
CORE_SLOT = SUBSCRIPTION_FAMILIES.index("core_plan")
SLOT_PRODUCTS = tuple(family_products(f) for f in SUBSCRIPTION_FAMILIES)
#: Product weights per slot: (segments, products of the slot's family).
SLOT_WEIGHTS = tuple(np.array(w) for w in HOLDINGS.slot_weights)
HARDWARE = family_products("hardware")
HARDWARE_WEIGHTS = np.array(HOLDINGS.hardware_weights)
ACCESSORIES = family_products("accessories")
ACCESSORY_WEIGHTS = np.array(HOLDINGS.accessory_weights)

# Per-segment volumes, per month.
PURCHASE_RATE = np.array(PURCHASES.purchase_rate)
EXTRA_QUANTITY = np.array(PURCHASES.extra_quantity)
DISCOUNTS = np.array(PURCHASES.discounts)
DISCOUNT_SHARE = np.array(PURCHASES.discount_share)
SEASON = dict(PURCHASES.season)
CONTACT_RATE = np.array(INTERACTIONS.contact_rate)


def mean_accessory_price() -> float:
    """Mean catalogue price of a routine (accessory) purchase item."""
    return float(ACCESSORY_WEIGHTS @ PRICE[ACCESSORIES])


def mean_hardware_price() -> float:
    """Mean catalogue price of a hardware purchase item."""
    return float(HARDWARE_WEIGHTS @ PRICE[HARDWARE])


def mean_kept_share() -> float:
    """Expected ``1 - discount`` of a purchase priced from the catalogue."""
    return 1.0 - float(DISCOUNTS @ DISCOUNT_SHARE)


# Interaction kinds: three per channel, in the order of CHANNELS.
KIND_CHANNEL = np.repeat(np.arange(len(CHANNELS)), 3)
KIND_NAMES = np.array([k[1] for k in INTERACTION_KINDS], dtype=object)
KIND_AGENT = np.array([k[2] for k in INTERACTION_KINDS])
KIND_OUTSOURCABLE = np.array([k[3] for k in INTERACTION_KINDS])
KIND_CUM = np.cumsum(
    np.array([k[4] for k in INTERACTION_KINDS]).reshape(len(CHANNELS), 3), axis=1
)
CHANNEL_SHARE = np.array(INTERACTIONS.channel_share)
CAMPAIGN_CHANNEL = CHANNELS.index("campaign")


def kind_index(channel: str, kind: str) -> int:
    return next(
        i for i, k in enumerate(INTERACTION_KINDS) if k[0] == channel and k[1] == kind
    )
