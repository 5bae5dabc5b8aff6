"""Expand: products get an optional brand, indexed for filtering.

A nullable column and an index built concurrently: the previous release keeps
serving while this runs, and never reads the new column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.add_column("products", sa.Column("brand", sa.Text, nullable=True))
    with op.get_context().autocommit_block():
        op.create_index("ix_products_brand", "products", ["brand"], postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_products_brand", table_name="products")
    op.drop_column("products", "brand")
