"""Consumer accounts in the operator API: an account's balance and history, and recharges
(a payment gateway or a counter calls this; the reference makes a retry credit once)."""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from hes_sim.hes.api.schemas import ErrorOut, iso, iso_or_none
from hes_sim.hes.operations import AccountView, Operations, RechargeView

REFUSED: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}}


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountStepOut(_Schema):
    state: str
    at: str
    reason: str


class AlertOut(_Schema):
    threshold: Decimal = Field(description="share of the last recharge; 0: balance reached zero")
    level: Decimal = Field(description="rupees")
    balance: Decimal = Field(description="rupees, after the posting that crossed the level")
    at: str


class AccountOut(_Schema):
    meter_id: str
    consumer_id: str
    mode: str = Field(description="postpaid or prepaid")
    state: str
    balance: Decimal = Field(description="rupees")
    supply_on: bool
    grace_until: str | None = Field(description="no prepaid disconnection before it")
    history: list[AccountStepOut]
    alerts: list[AlertOut] = Field(description="low-balance alerts, oldest first")

    @classmethod
    def of(cls, view: AccountView, tz: tzinfo) -> AccountOut:
        return cls(
            meter_id=view.meter_id,
            consumer_id=view.consumer_id,
            mode=view.mode,
            state=view.state,
            balance=view.balance,
            supply_on=view.supply_on,
            grace_until=iso_or_none(view.grace_until, tz),
            history=[AccountStepOut(state=s.state, at=iso(s.at, tz), reason=s.reason)
                     for s in view.history],
            alerts=[AlertOut(threshold=a.threshold, level=a.level, balance=a.balance,
                             at=iso(a.at, tz)) for a in view.alerts],
        )  # fmt: skip


class RechargeRequest(_Schema):
    amount: Decimal = Field(gt=0, le=1_000_000, decimal_places=2, description="rupees")
    reference: str = Field(min_length=1, max_length=100, description="the payment's own id")


class RechargeOut(_Schema):
    meter_id: str
    balance: Decimal
    state: str
    reconnect_command: str | None = Field(
        description="the reconnect command it started (the consumer was disconnected)"
    )

    @classmethod
    def of(cls, view: RechargeView) -> RechargeOut:
        return cls(meter_id=view.meter_id, balance=view.balance, state=view.state,
                   reconnect_command=view.reconnect_command)  # fmt: skip


def account_routes(router: APIRouter, ops: Operations, tz: tzinfo) -> APIRouter:
    @router.get(
        "/accounts/{meter_id}", response_model=AccountOut, responses=REFUSED,
        summary="the consumer account of a meter: balance, state, history",
    )  # fmt: skip
    async def get_account(meter_id: str) -> AccountOut:
        return AccountOut.of(await ops.account(meter_id), tz)

    @router.post(
        "/accounts/{meter_id}/recharges", status_code=status.HTTP_201_CREATED,
        response_model=RechargeOut, responses=REFUSED,
        summary="credit a recharge (once per reference); a disconnected consumer is "
        "reconnected at once",
    )  # fmt: skip
    async def recharge(meter_id: str, body: RechargeRequest) -> RechargeOut:
        return RechargeOut.of(await ops.recharge(meter_id, body.amount, body.reference))

    return router
