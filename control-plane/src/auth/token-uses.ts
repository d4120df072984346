/**
 * Where join-token uses are recorded: shared by every replica, so a token
 * spent on one is refused on all. Two implementations: files in the CA dir
 * (join-token-store.ts, local mode and replicas sharing the dir) and
 * create-only objects on the Kubernetes API server
 * (kubernetes/kube-token-uses.ts). Both claim a use by creating its record
 * exclusively, which is atomic across processes: a use is granted once, and
 * a record that could not be written claims nothing.
 */

/** The ledger of join-token uses. */
export interface TokenUses {
  /**
   * Claims one of `uses` uses of `tokenId` (valid until `expiresAtMs`, after
   * which its records may be dropped); resolves with the use number (1-based).
   * Rejects with TRELLIS_CP_TOKEN_SPENT when every use is taken, and with
   * TRELLIS_CP_JOIN_TOKEN_STORE when the use could not be recorded: then
   * nothing was claimed and the token is as it was.
   */
  consume(tokenId: string, uses: number, expiresAtMs: number): Promise<number>;
  /**
   * Gives back use `use` of `tokenId`: its SVID was never handed out (the
   * issuance failed), so the workload may try again with the same token.
   */
  release(tokenId: string, use: number): Promise<void>;
  /**
   * Where a use's record is an object of its own (the API server), proves
   * that one could be written now, taking no use: resolves when a probe
   * record was created (and removed), rejects with
   * TRELLIS_CP_JOIN_TOKEN_STORE otherwise. Absent where the CA dir's own
   * probe already says it (files).
   */
  probe?(): Promise<void>;
}
