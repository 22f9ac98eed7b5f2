"""organisations: members, products and access, invitations, ownership offers, contacts and
contact-change requests, the audit log; organisation usernames as an identifier kind; the
organisation of codes and grants; the product of clients

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:27:51
"""
from alembic import op
import sqlalchemy as sa



revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('organisations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('handle', sa.String(length=40), nullable=False),
    sa.Column('business_id', sa.String(length=40), nullable=True),
    sa.Column('billing_contact_locked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('handle', name=op.f('uq_organisations_handle'))
    )
    op.create_table('products',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('handle', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('handle', name=op.f('uq_products_handle'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_type', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=100), nullable=True),
    sa.Column('org_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=True),
    sa.Column('target_id', sa.String(length=100), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_audit_events_org_id_organisations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_events_org_id_at', ['org_id', 'at'], unique=False)

    op.create_table('contact_change_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_user_id', sa.String(length=64), nullable=True),
    sa.Column('to_user_id', sa.String(length=64), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('old_token_hash', sa.String(length=64), nullable=True),
    sa.Column('new_token_hash', sa.String(length=64), nullable=False),
    sa.Column('old_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('new_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['from_user_id'], ['users.id'], name=op.f('fk_contact_change_requests_from_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_contact_change_requests_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by'], ['users.id'], name=op.f('fk_contact_change_requests_requested_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['to_user_id'], ['users.id'], name=op.f('fk_contact_change_requests_to_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_change_requests')),
    sa.UniqueConstraint('new_token_hash', name=op.f('uq_contact_change_requests_new_token_hash')),
    sa.UniqueConstraint('old_token_hash', name=op.f('uq_contact_change_requests_old_token_hash'))
    )
    with op.batch_alter_table('contact_change_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_change_requests_org_id'), ['org_id'], unique=False)

    op.create_table('invitations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('invited_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_by', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['accepted_by'], ['users.id'], name=op.f('fk_invitations_accepted_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['invited_by'], ['users.id'], name=op.f('fk_invitations_invited_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_invitations_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_invitations_token_hash'))
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_org_id'), ['org_id'], unique=False)

    op.create_table('memberships',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'admin', 'editor', 'member')", name=op.f('ck_memberships_role')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_memberships_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_memberships_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_memberships')),
    sa.UniqueConstraint('org_id', 'user_id', name=op.f('uq_memberships_org_id_user_id'))
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_memberships_user_id'), ['user_id'], unique=False)
        batch_op.create_index('uq_memberships_one_owner', ['org_id'], unique=True, sqlite_where=sa.text("role = 'owner'"), postgresql_where=sa.text("role = 'owner'"))

    op.create_table('org_contacts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('admin', 'technical', 'billing')", name=op.f('ck_org_contacts_kind')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_org_contacts_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_org_contacts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_org_contacts')),
    sa.UniqueConstraint('org_id', 'kind', name=op.f('uq_org_contacts_org_id_kind'))
    )
    with op.batch_alter_table('org_contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_org_contacts_org_id'), ['org_id'], unique=False)

    op.create_table('ownership_offers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('from_user_id', sa.String(length=64), nullable=False),
    sa.Column('to_user_id', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['from_user_id'], ['users.id'], name=op.f('fk_ownership_offers_from_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_ownership_offers_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_user_id'], ['users.id'], name=op.f('fk_ownership_offers_to_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ownership_offers')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_ownership_offers_token_hash'))
    )
    with op.batch_alter_table('ownership_offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ownership_offers_org_id'), ['org_id'], unique=False)

    op.create_table('product_access',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('product_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_product_access_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_product_access_product_id_products'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_product_access_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_access')),
    sa.UniqueConstraint('org_id', 'product_id', 'user_id', name=op.f('uq_product_access_org_id_product_id_user_id'))
    )
    with op.batch_alter_table('product_access', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_product_access_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_access_product_id'), ['product_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_access_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('org_id', sa.String(length=64), nullable=True))

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('product_id', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_clients_product_id_products'), 'products', ['product_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('org_id', sa.String(length=64), nullable=True))

    # Organisation usernames (`maija@acme`) are identifiers too.
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_identifiers_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_identifiers_kind'), "kind IN ('email', 'phone', 'username')")


def downgrade() -> None:
    with op.batch_alter_table('identifiers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_identifiers_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_identifiers_kind'), "kind IN ('email', 'phone')")

    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_column('org_id')

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_clients_product_id_products'), type_='foreignkey')
        batch_op.drop_column('product_id')

    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_column('org_id')

    with op.batch_alter_table('product_access', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_product_access_user_id'))
        batch_op.drop_index(batch_op.f('ix_product_access_product_id'))
        batch_op.drop_index(batch_op.f('ix_product_access_org_id'))

    op.drop_table('product_access')
    with op.batch_alter_table('ownership_offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ownership_offers_org_id'))

    op.drop_table('ownership_offers')
    with op.batch_alter_table('org_contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_org_contacts_org_id'))

    op.drop_table('org_contacts')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('uq_memberships_one_owner', sqlite_where=sa.text("role = 'owner'"), postgresql_where=sa.text("role = 'owner'"))
        batch_op.drop_index(batch_op.f('ix_memberships_user_id'))
        batch_op.drop_index(batch_op.f('ix_memberships_org_id'))

    op.drop_table('memberships')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_org_id'))

    op.drop_table('invitations')
    with op.batch_alter_table('contact_change_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_change_requests_org_id'))

    op.drop_table('contact_change_requests')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_org_id_at')
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))

    op.drop_table('audit_events')
    op.drop_table('products')
    op.drop_table('organisations')
