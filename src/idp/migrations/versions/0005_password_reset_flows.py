"""password_reset_flows: the persisted password reset state machine (flows/recovery.py)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('password_reset_flows',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('destination_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('login_flow_id', sa.String(length=64), nullable=True),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_reset_flows_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_flows'))
    )
    with op.batch_alter_table('password_reset_flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_reset_flows_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_password_reset_flows_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('password_reset_flows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_reset_flows_user_id'))
        batch_op.drop_index(batch_op.f('ix_password_reset_flows_expires_at'))
    op.drop_table('password_reset_flows')
