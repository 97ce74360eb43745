"""What a request costs: dollars per 1,000 billable characters, as Google bills Codey."""

from __future__ import annotations

from codey.config import Price, PricingSettings, Service


def billable_characters(text: str) -> int:
    """UTF-8 characters, whitespace not counted."""
    return sum(1 for ch in text if not ch.isspace())


class PriceList:
    def __init__(self, settings: PricingSettings) -> None:
        self._settings = settings

    def price(self, service: Service, model: str, *, batch: bool = False) -> Price:
        by_model = self._settings.models.get(model, {})
        if service in by_model:
            return by_model[service]
        if batch and service in self._settings.batch:
            return self._settings.batch[service]
        return self._settings.services.get(service, Price())

    def cost(
        self,
        service: Service,
        model: str,
        input_chars: int,
        output_chars: int,
        *,
        batch: bool = False,
    ) -> float:
        price = self.price(service, model, batch=batch)
        return (
            input_chars * price.input_per_1k_chars + output_chars * price.output_per_1k_chars
        ) / 1000
