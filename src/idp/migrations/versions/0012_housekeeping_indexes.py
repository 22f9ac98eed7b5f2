"""indexes for housekeeping

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:00:00

Housekeeping (housekeeping.py) deletes expired browser sessions and one-time codes, and grants
created before its horizon: without these indexes each round would scan those tables whole.
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_browser_sessions_expires_at', 'browser_sessions', ['expires_at'])
    op.create_index('ix_otp_codes_expires_at', 'otp_codes', ['expires_at'])
    op.create_index('ix_grants_created_at', 'grants', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_grants_created_at', table_name='grants')
    op.drop_index('ix_otp_codes_expires_at', table_name='otp_codes')
    op.drop_index('ix_browser_sessions_expires_at', table_name='browser_sessions')
