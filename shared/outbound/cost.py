"""What a message cost: the provider's figure when it gives one, else an estimate.

- Twilio reports `price` (negative, in `price_unit`, usually USD) on the message
  resource and in some status callbacks; we store its absolute value.
- Meta reports no amount, only `pricing{billable, pricing_model, category}`:
  `billable: false` (service replies, utility templates inside an open window)
  costs nothing; otherwise the configured per-channel estimate applies.
- Everything else: the configured estimate per channel (seed figures, BRL;
  the setting each channel's row in shared/core/channels.py names). An
  unknown channel raises UnknownChannel rather than costing nothing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from shared.core.channels import channel as channel_row
from shared.core.config import Settings


def estimated_cost(settings: Settings, channel: str) -> tuple[Decimal, str]:
    estimate = getattr(settings, channel_row(channel).cost_setting)
    return Decimal(str(estimate)), settings.COST_CURRENCY


def reported_cost(
    settings: Settings,
    channel: str,
    price: str | None,
    price_currency: str | None,
    pricing: dict[str, Any] | None,
) -> tuple[Decimal, str] | None:
    """The cost a provider's status update tells us, or None if it tells nothing."""
    if price not in (None, ""):
        try:
            amount = abs(Decimal(str(price)))
        except InvalidOperation:
            return None
        currency = (price_currency or settings.COST_CURRENCY).upper()[:3]
        return amount, currency
    if isinstance(pricing, dict) and "billable" in pricing:
        if pricing.get("billable") is False:
            return Decimal("0"), settings.COST_CURRENCY
        return estimated_cost(settings, channel)
    return None
