"""identifiers: the emails and phone numbers an account signs in with

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:10:00

Every existing users.email is copied in as a verified email identifier, because until now it was
what the account signed in with and login now goes through verified identifiers only. users.email
stays: it is the primary email the OIDC `email` claim uses.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('identifiers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=320), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('email', 'phone')", name=op.f('ck_identifiers_kind')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_identifiers_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identifiers')),
    sa.UniqueConstraint('user_id', 'kind', 'value', name=op.f('uq_identifiers_user_id_kind_value'))
    )
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.create_index('ix_identifiers_kind_value', ['kind', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_identifiers_user_id'), ['user_id'], unique=False)
        # A verified value belongs to one account only; unverified ones may repeat.
        batch_op.create_index('uq_identifiers_verified_kind_value', ['kind', 'value'], unique=True,
                              sqlite_where=sa.text('verified'), postgresql_where=sa.text('verified'))

    # Data: each account's email becomes a verified email identifier. The user's id is a fresh
    # random value already, so it serves as the identifier's id (one email per user).
    users = sa.table('users', sa.column('id', sa.String), sa.column('email', sa.String),
                     sa.column('created_at', sa.DateTime(timezone=True)))
    identifiers = sa.table('identifiers', sa.column('id', sa.String), sa.column('user_id', sa.String),
                           sa.column('kind', sa.String), sa.column('value', sa.String),
                           sa.column('verified', sa.Boolean), sa.column('created_at', sa.DateTime(timezone=True)),
                           sa.column('verified_at', sa.DateTime(timezone=True)))
    op.execute(identifiers.insert().from_select(
        ['id', 'user_id', 'kind', 'value', 'verified', 'created_at', 'verified_at'],
        sa.select(users.c.id, users.c.id, sa.literal('email'), sa.func.lower(users.c.email),
                  sa.true(), users.c.created_at, users.c.created_at),
    ))


def downgrade() -> None:
    # users.email was never touched, so dropping the table loses only the identifiers added since.
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.drop_index('uq_identifiers_verified_kind_value', sqlite_where=sa.text('verified'),
                            postgresql_where=sa.text('verified'))
        batch_op.drop_index(batch_op.f('ix_identifiers_user_id'))
        batch_op.drop_index('ix_identifiers_kind_value')

    op.drop_table('identifiers')
