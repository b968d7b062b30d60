// A certificate revocation list (RFC 5280 §5) read from a file, its signature checked against the CA that
// issued it, answering whether a certificate serial number is revoked. SslStream on Linux only fetches CRLs
// from distribution points; CRIU's --tls-cacrl names a local file, so the check is made here.
//
//   CertificateList ::= SEQUENCE { tbsCertList TBSCertList, signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Crest.Transport.Tls;

internal sealed class RevocationList
{
    private const string Sha256WithRsa = "1.2.840.113549.1.1.11";
    private const string Sha384WithRsa = "1.2.840.113549.1.1.12";
    private const string Sha512WithRsa = "1.2.840.113549.1.1.13";
    private const string EcdsaWithSha256 = "1.2.840.10045.4.3.2";
    private const string EcdsaWithSha384 = "1.2.840.10045.4.3.3";
    private const string EcdsaWithSha512 = "1.2.840.10045.4.3.4";

    private readonly HashSet<string> _revoked = new(StringComparer.Ordinal);
    private readonly byte[] _tbs;
    private readonly string _algorithm;
    private readonly byte[] _signature;

    private RevocationList(string path, byte[] der)
    {
        Path = path;
        var outer = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        _tbs = outer.ReadEncodedValue().ToArray();
        _algorithm = outer.ReadSequence().ReadObjectIdentifier();
        _signature = outer.ReadBitString(out _);
        // TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL,
        //                            revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, ... } OPTIONAL, [0] extensions }
        var tbs = new AsnReader(_tbs, AsnEncodingRules.DER).ReadSequence();
        if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer)) tbs.ReadInteger();
        tbs.ReadSequence();
        tbs.ReadEncodedValue();
        tbs.ReadEncodedValue();
        if (tbs.HasData && (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) || tbs.PeekTag().HasSameClassAndValue(Asn1Tag.GeneralizedTime)))
            tbs.ReadEncodedValue();
        if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
        {
            var entries = tbs.ReadSequence();
            while (entries.HasData)
            {
                var entry = entries.ReadSequence();
                _revoked.Add(Convert.ToHexString(entry.ReadIntegerBytes().Span));
            }
        }
    }

    public string Path { get; }

    /// <summary>Reads a PEM ("X509 CRL") or DER file.</summary>
    public static RevocationList Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TlsException($"Can't read certificate revocation list {path}: {e.Message}", e);
        }
        try
        {
            string text = System.Text.Encoding.ASCII.GetString(bytes);
            byte[] der = text.Contains("-----BEGIN X509 CRL-----", StringComparison.Ordinal)
                ? PemEncoding.Find(text) is var f && text[f.Label] == "X509 CRL" ? Convert.FromBase64String(text[f.Base64Data]) : throw new CryptographicException("no X509 CRL block")
                : bytes;
            return new RevocationList(path, der);
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException or FormatException or ArgumentException)
        {
            throw new TlsException($"Can't parse certificate revocation list {path}: {e.Message}", e);
        }
    }

    /// <summary>Whether <paramref name="issuer"/>'s key made this list's signature.</summary>
    public bool SignedBy(X509Certificate2 issuer)
    {
        var hash = _algorithm switch
        {
            Sha256WithRsa or EcdsaWithSha256 => HashAlgorithmName.SHA256,
            Sha384WithRsa or EcdsaWithSha384 => HashAlgorithmName.SHA384,
            Sha512WithRsa or EcdsaWithSha512 => HashAlgorithmName.SHA512,
            _ => default,
        };
        if (hash == default) return false;
        if (_algorithm.StartsWith("1.2.840.113549", StringComparison.Ordinal))
        {
            using var rsa = issuer.GetRSAPublicKey();
            return rsa is not null && rsa.VerifyData(_tbs, _signature, hash, RSASignaturePadding.Pkcs1);
        }
        using var ecdsa = issuer.GetECDsaPublicKey();
        return ecdsa is not null && ecdsa.VerifyData(_tbs, _signature, hash, DSASignatureFormat.Rfc3279DerSequence);
    }

    /// <summary>Whether the list names <paramref name="certificate"/>'s serial number.</summary>
    public bool Revokes(X509Certificate2 certificate) => _revoked.Contains(Convert.ToHexString(certificate.SerialNumberBytes.Span));
}
