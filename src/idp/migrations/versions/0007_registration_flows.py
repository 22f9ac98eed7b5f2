"""registration_flows: the persisted self-registration state machine (flows/registration.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registration_flows',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('destination_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('password_hash_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('login_flow_id', sa.String(length=64), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration_flows'))
    )
    with op.batch_alter_table('registration_flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registration_flows_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('registration_flows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registration_flows_expires_at'))
    op.drop_table('registration_flows')
