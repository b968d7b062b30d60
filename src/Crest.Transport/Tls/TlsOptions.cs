// CRIU's TLS options (criu --tls, --tls-cacert, --tls-cacrl, --tls-cert, --tls-key, --tls-no-cn-verify)
// and its default file locations under /etc/pki. Both ends present a certificate: the server requires a
// client certificate, and each end checks the other's against the CA (and the CRL when there is one).
namespace Crest.Transport.Tls;

/// <summary>What an end of a TLS connection trusts and presents, as CRIU's command line says it.</summary>
public sealed record TlsOptions
{
    public const string DefaultCaCert = "/etc/pki/CA/cacert.pem";
    public const string DefaultCaCrl = "/etc/pki/CA/cacrl.pem";
    public const string DefaultCert = "/etc/pki/criu/cert.pem";
    public const string DefaultKey = "/etc/pki/criu/private/key.pem";

    /// <summary>--tls-cacert: the CA certificates (PEM) a peer's certificate must chain to. When not given,
    /// the system's trusted roots and <see cref="DefaultCaCert"/> (if it exists) are used, as CRIU does.</summary>
    public string? CaCert { get; init; }

    /// <summary>--tls-cacrl: a revocation list (PEM or DER) of the CA. Given, it must be readable; when not given,
    /// <see cref="DefaultCaCrl"/> is used if it exists.</summary>
    public string? CaCrl { get; init; }

    /// <summary>--tls-cert: this end's certificate (PEM).</summary>
    public string? Cert { get; init; }

    /// <summary>--tls-key: this end's private key (PEM).</summary>
    public string? Key { get; init; }

    /// <summary>--tls-no-cn-verify: accept a peer whose certificate does not name the address.</summary>
    public bool NoCnVerify { get; init; }

    public string CertPath => Cert ?? DefaultCert;
    public string KeyPath => Key ?? DefaultKey;
    public string CaCertPath => CaCert ?? DefaultCaCert;
}
