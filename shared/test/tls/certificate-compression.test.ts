import { expect } from 'chai';
import { constants } from 'node:crypto';
import { SSL_OP_NO_RX_CERTIFICATE_COMPRESSION, SSL_OP_NO_TX_CERTIFICATE_COMPRESSION, withoutCertificateCompression } from '../../src/tls/certificate-compression';

describe('withoutCertificateCompression (secureOptions for node:tls)', () => {
  const both = SSL_OP_NO_TX_CERTIFICATE_COMPRESSION + SSL_OP_NO_RX_CERTIFICATE_COMPRESSION;

  it('Should set OpenSSL bits 32 and 33, above what a 32-bit OR can carry', () => {
    expect(SSL_OP_NO_TX_CERTIFICATE_COMPRESSION).to.equal(4294967296);
    expect(SSL_OP_NO_RX_CERTIFICATE_COMPRESSION).to.equal(8589934592);
    expect(withoutCertificateCompression()).to.equal(both);
  });

  it('Should keep the other options, and not add a bit twice', () => {
    expect(withoutCertificateCompression(constants.SSL_OP_NO_TICKET)).to.equal(both + constants.SSL_OP_NO_TICKET);
    expect(withoutCertificateCompression(withoutCertificateCompression(constants.SSL_OP_NO_TICKET))).to.equal(both + constants.SSL_OP_NO_TICKET);
    expect(withoutCertificateCompression(SSL_OP_NO_TX_CERTIFICATE_COMPRESSION)).to.equal(both);
  });
});
