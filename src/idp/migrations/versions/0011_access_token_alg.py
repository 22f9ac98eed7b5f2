"""the algorithm of a client's JWT access tokens

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:19:42

clients.access_token_signed_response_alg: RFC 9068 access tokens are ES256 unless the client
registered another algorithm; existing clients keep ES256, what every access token was before.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_token_signed_response_alg', sa.String(length=16),
                                      server_default='ES256', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('access_token_signed_response_alg')
