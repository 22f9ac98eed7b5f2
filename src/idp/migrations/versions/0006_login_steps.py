"""login steps: identifier-first and multi-step sign-in, temporary passwords, phone-only accounts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:00:00

- users.email becomes optional: an account registered with a phone number has no email.
- users.password_must_change / password_expires_at: a temporary password set by an admin works
  once, until it expires, and forces a new password before anything else.
- users.code_second_factor: "sms" or "email" when the person chose a code as second factor.
- authorization_flows.client_id becomes optional (the account pages sign in without a client)
  and authorization_flows.data holds what the steps learned so far (login, channel, factors done).
- browser_sessions.user_agent: shown on the account's list of active sessions.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email', existing_type=sa.String(length=320), nullable=True)
        batch_op.add_column(sa.Column('password_must_change', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('password_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('code_second_factor', sa.String(length=8), nullable=True))
    with op.batch_alter_table('authorization_flows', schema=None) as batch_op:
        batch_op.alter_column('client_id', existing_type=sa.String(length=100), nullable=True)
        batch_op.add_column(sa.Column('data', sa.JSON(), nullable=True))
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_agent', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.drop_column('user_agent')
    with op.batch_alter_table('authorization_flows', schema=None) as batch_op:
        batch_op.drop_column('data')
        batch_op.alter_column('client_id', existing_type=sa.String(length=100), nullable=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('code_second_factor')
        batch_op.drop_column('password_expires_at')
        batch_op.drop_column('password_must_change')
        batch_op.alter_column('email', existing_type=sa.String(length=320), nullable=False)
