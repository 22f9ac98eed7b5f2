"""authentication methods by name on sessions, codes and grants

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:10:00

RFC 8176's "otp" covers an authenticator app's code, an emailed code and a recovery code alike;
an organisation policy that allows only some second factors must know which one was used.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TABLES = ('browser_sessions', 'authorization_codes', 'grants')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('methods', sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('methods')
