/**
 * The object identifiers Trellis reads and writes, by name.
 */
export const Oid = Object.freeze({
  // Extensions (RFC 5280 4.2)
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  crlDistributionPoints: '2.5.29.31',
  certificatePolicies: '2.5.29.32',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  // Extended key usages
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  anyExtendedKeyUsage: '2.5.29.37.0',
  // Public key algorithms and curves
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ed25519: '1.3.101.112',
  prime256v1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  secp521r1: '1.3.132.0.35',
  // Signature algorithms
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha1WithRsa: '1.2.840.113549.1.1.5',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  rsassaPss: '1.2.840.113549.1.1.10',
  // Name attributes
  commonName: '2.5.4.3',
  countryName: '2.5.4.6',
  localityName: '2.5.4.7',
  stateOrProvinceName: '2.5.4.8',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',
  serialNumber: '2.5.4.5',
});

/** Short names for name attributes, as RFC 4514 prints them. */
export const NAME_ATTRIBUTE_SHORT: Readonly<Record<string, string>> = Object.freeze({
  [Oid.commonName]: 'CN',
  [Oid.countryName]: 'C',
  [Oid.localityName]: 'L',
  [Oid.stateOrProvinceName]: 'ST',
  [Oid.organizationName]: 'O',
  [Oid.organizationalUnitName]: 'OU',
  [Oid.serialNumber]: 'SERIALNUMBER',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
});

/** Signature algorithm OID -> [name, node:crypto digest or undefined when the digest is in the params/none]. */
export const SIGNATURE_ALGORITHMS: Readonly<Record<string, readonly [string, 'sha1' | 'sha256' | 'sha384' | 'sha512' | undefined]>> = Object.freeze({
  [Oid.ecdsaWithSha256]: ['ecdsa-with-SHA256', 'sha256'],
  [Oid.ecdsaWithSha384]: ['ecdsa-with-SHA384', 'sha384'],
  [Oid.ecdsaWithSha512]: ['ecdsa-with-SHA512', 'sha512'],
  [Oid.sha1WithRsa]: ['sha1WithRSAEncryption', 'sha1'],
  [Oid.sha256WithRsa]: ['sha256WithRSAEncryption', 'sha256'],
  [Oid.sha384WithRsa]: ['sha384WithRSAEncryption', 'sha384'],
  [Oid.sha512WithRsa]: ['sha512WithRSAEncryption', 'sha512'],
  [Oid.rsassaPss]: ['RSASSA-PSS', undefined],
  [Oid.ed25519]: ['Ed25519', undefined],
});
