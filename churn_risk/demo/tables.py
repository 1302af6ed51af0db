"""The nine CRM tables of the data contract (`features/contract.py`) from the simulated events.

Only what a CRM records: events of the window ``[start, start + months)`` and before each
customer's churn day, sorted by customer and time; unknown values (region, seats, damage, a
ticket's resolution while open) as nulls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn_risk.demo.catalog import KIND_NAMES, PRICE, PRODUCT_FAMILY, PRODUCT_IDS, PRODUCT_NAMES
from churn_risk.demo.coefficients import (
    ACQUISITION_CHANNELS,
    REGIONS,
    SEGMENTS,
    TICKET_CATEGORIES,
)
from churn_risk.demo.numeric import Chunk, concat, select
from churn_risk.demo.state import NEVER, Agents, Calendar, Customers, State, stamp
from churn_risk.demo.truth import FIRST_ID
from churn_risk.features.contract import CHANNELS


def _labels(codes: np.ndarray, names) -> np.ndarray:
    table = np.array([*names, None], dtype=object)
    return table[np.where(codes < 0, len(names), codes)]


def _bool_array(codes: np.ndarray) -> pd.arrays.BooleanArray:
    values = codes == 1
    return pd.arrays.BooleanArray(values, codes < 0)


class _Recorded:
    """Selects and sorts the events a CRM records."""

    def __init__(self, cal: Calendar, state: State):
        self.end_day = cal.at(cal.months)
        self.churn_day = state.churn_day

    def __call__(self, chunks: list[Chunk], day_key: str) -> Chunk:
        """Events dated (by `day_key`) in the window and before the customer's churn day,
        sorted by time (day, then second when known) and customer."""
        ev = concat(chunks)
        day = ev[day_key]
        ev = select(ev, (day < self.end_day) & (day < self.churn_day[ev["cust"]]))
        time = ev[day_key] * 86_400 + ev["sec"] if "sec" in ev else ev[day_key]
        return select(ev, np.lexsort((ev["cust"], time)))


#: Names people read on worklists and exports. Drawn from the customer id alone (no random
#: draw), so every other value of the data is what it was before names existed.
_GIVEN = ("Ana", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
          "Kaja", "Luca", "Marta", "Noah", "Olga", "Pavel", "Rosa", "Sami", "Tessa", "Victor",
          "Wen", "Yara", "Zoe", "Aiden", "Bruna", "Carlos", "Dina", "Emil", "Freya", "Gabriel")
_FAMILY = ("Almeida", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen",
           "Ivanova", "Janssen", "Kowalski", "Laurent", "Moreau", "Novak", "Oliveira", "Petrov",
           "Quinn", "Rossi", "Schmidt", "Torres", "Ueda", "Vidal", "Weber", "Xu", "Yilmaz",
           "Zimmer", "Bauer", "Conti", "Duarte", "Engel")
_COMPANY = ("Logistics", "Foods", "Dental", "Studio", "Partners", "Systems", "Motors", "Bakery",
            "Consulting", "Print", "Clinic", "Outdoor", "Labs", "Hotel", "Builders")


def _names(ids: np.ndarray, segment: np.ndarray) -> list[str]:
    """A person's name for consumers, a company's for businesses, from the id."""
    given = np.asarray(_GIVEN, dtype=object)[(ids * 7_919) % len(_GIVEN)]
    family = np.asarray(_FAMILY, dtype=object)[(ids * 104_729 // 7) % len(_FAMILY)]
    company = np.asarray(_COMPANY, dtype=object)[(ids * 15_485_863 // 11) % len(_COMPANY)]
    consumer = np.asarray(segment) == SEGMENTS.index("consumer")
    return [f"{g} {f}" if c else f"{f} {k}"
            for g, f, k, c in zip(given, family, company, consumer, strict=True)]


def _customers(cal: Calendar, cust: Customers, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "name": _names(ids, cust.segment),
            "signup_date": stamp(cal, cust.signup_day),
            "segment": _labels(cust.segment, SEGMENTS),
            "region": _labels(cust.region, REGIONS),
            "acquisition_channel": _labels(cust.acquisition, ACQUISITION_CHANNELS),
            "seats": np.where(cust.seats_known, cust.seats, np.nan),
        }
    )


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {"product_id": PRODUCT_IDS, "family": PRODUCT_FAMILY, "price": PRICE, "name": PRODUCT_NAMES}
    )


def _subscriptions(cal: Calendar, state: State, ids: np.ndarray) -> pd.DataFrame:
    """Ended subscriptions as recorded, the still active ones with a null end date."""
    active = np.nonzero(state.sub_product >= 0)
    subs = concat(
        [
            *state.ended_subscriptions,
            {
                "cust": active[0],
                "product": state.sub_product[active],
                "start": state.sub_start[active],
                "end": np.full(active[0].size, NEVER, dtype=np.int64),
                "amount": state.sub_amount[active],
            },
        ]
    )
    subs = select(subs, np.lexsort((subs["product"], subs["start"], subs["cust"])))
    return pd.DataFrame(
        {
            "customer_id": ids[subs["cust"]],
            "product_id": PRODUCT_IDS[subs["product"]],
            "start_date": stamp(cal, subs["start"]),
            "end_date": stamp(cal, subs["end"]),
            "recurring_amount": subs["amount"],
        }
    )


def _transactions(cal: Calendar, tx: Chunk, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids[tx["cust"]],
            "timestamp": stamp(cal, tx["day"], tx["sec"]),
            "amount": tx["amount"],
            "transaction_id": 1 + np.arange(tx["cust"].size, dtype=np.int64),
            "product_id": PRODUCT_IDS[tx["product"]],
            "quantity": tx["quantity"],
            "is_return": tx["is_return"],
        }
    )


def _interactions(cal: Calendar, ia: Chunk, ids: np.ndarray, agents: Agents) -> pd.DataFrame:
    width = max(4, len(str(agents.total)))
    agent_names = np.array([f"A{a + 1:0{width}d}" for a in range(agents.total)], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids[ia["cust"]],
            "timestamp": stamp(cal, ia["day"], ia["sec"]),
            "channel": _labels(ia["channel"], CHANNELS),
            "kind": KIND_NAMES[ia["kind"]],
            "agent_id": _labels(ia["agent"], agent_names),
            "outsourced": ia["outsourced"],
        }
    )


def _tickets(cal: Calendar, tk: Chunk, ids: np.ndarray, end_day: int) -> pd.DataFrame:
    still_open = tk["closed"] >= end_day
    return pd.DataFrame(
        {
            "customer_id": ids[tk["cust"]],
            "opened_at": stamp(cal, tk["opened"]),
            "closed_at": stamp(cal, np.where(still_open, NEVER, tk["closed"])),
            "category": _labels(tk["category"], TICKET_CATEGORIES),
            "resolved": _bool_array(np.where(still_open, -1, tk["resolved"])),
        }
    )


def _deliveries(cal: Calendar, dl: Chunk, ids: np.ndarray, end_day: int) -> pd.DataFrame:
    not_yet = dl["delivered"] >= end_day
    return pd.DataFrame(
        {
            "customer_id": ids[dl["cust"]],
            "promised_date": stamp(cal, dl["promised"]),
            "delivered_date": stamp(cal, np.where(not_yet, NEVER, dl["delivered"])),
            "damaged": _bool_array(np.where(not_yet, -1, dl["damaged"])),
        }
    )


def _surveys(cal: Calendar, sv: Chunk, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids[sv["cust"]],
            "timestamp": stamp(cal, sv["day"]),
            **{k: sv[k] for k in ("satisfaction", "nps", "price", "benefits", "problems")},
        }
    )


def _campaigns(cal: Calendar, rows: list[Chunk], ids: np.ndarray) -> pd.DataFrame:
    if rows:
        cp = concat(rows)
    else:
        cp = {
            "cust": np.zeros(0, np.int64),
            "campaign": np.zeros(0, object),
            "day": np.zeros(0, np.int64),
            "treatment": np.zeros(0, bool),
            "offer": np.zeros(0, object),
            "responded": np.zeros(0, bool),
        }
    return pd.DataFrame(
        {
            "customer_id": ids[cp["cust"]],
            "campaign_id": cp["campaign"],
            "timestamp": stamp(cal, cp["day"]),
            "group": np.where(cp["treatment"], "treatment", "control").astype(object),
            "offer": cp["offer"],
            "responded": cp["responded"],
        }
    )


def build_tables(
    cal: Calendar,
    cust: Customers,
    state: State,
    events: dict[str, list[Chunk]],
    campaign_rows: list[Chunk],
    agents: Agents,
) -> dict[str, pd.DataFrame]:
    """The nine tables, in the order of the data contract."""
    ids = FIRST_ID + np.arange(cust.n, dtype=np.int64)
    recorded = _Recorded(cal, state)
    end_day = recorded.end_day
    return {
        "customers": _customers(cal, cust, ids),
        "transactions": _transactions(cal, recorded(events["transactions"], "day"), ids),
        "subscriptions": _subscriptions(cal, state, ids),
        "products": _products(),
        "interactions": _interactions(cal, recorded(events["interactions"], "day"), ids, agents),
        "tickets": _tickets(cal, recorded(events["tickets"], "opened"), ids, end_day),
        "deliveries": _deliveries(cal, recorded(events["deliveries"], "promised"), ids, end_day),
        "surveys": _surveys(cal, recorded(events["surveys"], "day"), ids),
        "campaigns": _campaigns(cal, campaign_rows, ids),
    }
