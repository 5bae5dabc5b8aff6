"""Expand: orders get a payment status; the payment provider's events are recorded once per event id.

A new column with a constant server default (PostgreSQL 11+ adds it without rewriting the table, and
the previous release's inserts, which do not name it, get `pending`) and a new table: the previous
release keeps serving while this runs, and never reads either.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.add_column("orders", sa.Column("payment_status", sa.Text, nullable=False, server_default=sa.text("'pending'")))
    op.create_table(
        "payment_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.BigInteger, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=True),
        sa.Column("applied", sa.Boolean, nullable=False),
        sa.Column("payload_sha256", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_payment_events_order_id", "payment_events", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_payment_events_order_id", table_name="payment_events")
    op.drop_table("payment_events")
    op.drop_column("orders", "payment_status")
