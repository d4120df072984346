/**
 * Exit codes that carry meaning between a Trellis process and whatever
 * supervises it (kubelet, `trellis up`), beyond 0 (done) and 1 (an error).
 */

/**
 * `trellis sidecar` exits with this when it holds no credential it can
 * authenticate with any more: its SVID expired (or it never had one) and the
 * control plane refused its join token as spent or expired. Only a restart
 * with a fresh token helps; `trellis up` restarts such a sidecar at once with
 * one. 75 is sysexits.h's EX_TEMPFAIL: try again (with new input).
 */
export const NO_CREDENTIAL_EXIT_CODE = 75;
