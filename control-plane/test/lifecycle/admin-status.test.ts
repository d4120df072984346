import { expect } from 'chai';
import { TrellisError } from '@trellis/shared';
import { AdminError, AdminErrorCode } from '../../src/admin/admin-error';
import { errorBody, httpStatusOf } from '../../src/admin/admin-status';
import { LifecycleError, LifecycleErrorCode } from '../../src/lifecycle/lifecycle-error';

describe('admin API error mapping (one table for every lifecycle step)', () => {
  const cases: Array<[string, unknown, number]> = [
    ['a bad body', new AdminError(AdminErrorCode.BAD_BODY, 'x'), 400],
    ['a bad revocation target', new LifecycleError(LifecycleErrorCode.BAD_REVOCATION, 'x'), 400],
    ['lifting what is not revoked', new LifecycleError(LifecycleErrorCode.NOT_REVOKED, 'x'), 404],
    ['an unknown path', new AdminError(AdminErrorCode.NOT_FOUND, 'x'), 404],
    ['a wrong method', new AdminError(AdminErrorCode.METHOD_NOT_ALLOWED, 'x'), 405],
    ['no admin identity', new AdminError(AdminErrorCode.UNAUTHENTICATED, 'x'), 401],
    ['an identity not on the allow-list, or revoked', new AdminError(AdminErrorCode.FORBIDDEN, 'x'), 403],
    ['a foreign Host', new AdminError(AdminErrorCode.MISDIRECTED, 'x'), 421],
    ['a state change that is not JSON', new AdminError(AdminErrorCode.UNSUPPORTED_MEDIA_TYPE, 'x'), 415],
    ['rotation material without a valid current-root proof', new LifecycleError(LifecycleErrorCode.BAD_ROOT_PROOF, 'x'), 403],
    ['unusable rotation material', new LifecycleError(LifecycleErrorCode.BAD_ROTATION_MATERIAL, 'x'), 422],
    ['another step holding the lock or a rotation in the wrong phase', new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, 'x'), 409],
    ['a root that cannot be used', new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, 'x'), 422],
    ['a damaged state file', new LifecycleError(LifecycleErrorCode.BAD_STATE, 'x'), 500],
    ['an error of another family', new TrellisError('TRELLIS_SOMETHING_ELSE', 'x'), 500],
    ['a plain Error', new Error('boom'), 500],
  ];
  for (const [name, err, status] of cases) {
    it(`answers ${status} for ${name}`, () => {
      expect(httpStatusOf(err)).to.equal(status);
    });
  }

  it('puts the code and details in the body, and a code even for an unexpected error', () => {
    expect(errorBody(new AdminError(AdminErrorCode.BAD_BODY, 'spiffeId must be a string', { field: 'spiffeId' }))).to.deep.equal({ error: { code: 'TRELLIS_ADMIN_BAD_BODY', message: 'spiffeId must be a string', details: { field: 'spiffeId' } } });
    expect(errorBody(new Error('boom')).error.code).to.equal('TRELLIS_ADMIN_INTERNAL');
  });
});
