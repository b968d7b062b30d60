// A throwaway CA, certificates it signs and a revocation list, written as PEM files into a temporary
// directory (made with .NET's CertificateRequest, so the tests need no openssl).
using System.Net;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Crest.Transport.Tests.Tls;

public sealed class TestPki : IDisposable
{
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly List<byte[]> _revoked = [];
    private int _serial = 100;

    public TestPki(string caName = "Crest test CA")
    {
        Directory = Path.Combine(Path.GetTempPath(), $"crest-pki-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
        var request = new CertificateRequest($"CN={caName}", _caKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        _ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        CaCert = Path.Combine(Directory, "cacert.pem");
        File.WriteAllText(CaCert, _ca.ExportCertificatePem());
    }

    public string Directory { get; }
    public string CaCert { get; }

    /// <summary>A certificate for <paramref name="name"/> (an IP address goes into an IP SAN, else a DNS SAN and the CN);
    /// returns the paths of its PEM certificate and key.</summary>
    public (string Cert, string Key) Issue(string name, string file, bool revoke = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        if (IPAddress.TryParse(name, out var ip)) san.AddIpAddress(ip);
        else san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_ca, true, false));
        byte[] serial = BitConverter.GetBytes(++_serial).Reverse().ToArray();
        using var cert = request.Create(_ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10), serial);
        string certPath = Path.Combine(Directory, file + ".pem"), keyPath = Path.Combine(Directory, file + "-key.pem");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        if (revoke) _revoked.Add(cert.SerialNumberBytes.ToArray());
        return (certPath, keyPath);
    }

    /// <summary>The CA's revocation list of every certificate issued with revoke: true, as a PEM file.</summary>
    public string WriteCrl()
    {
        var builder = new CertificateRevocationListBuilder();
        foreach (var serial in _revoked) builder.AddEntry(serial, DateTimeOffset.UtcNow.AddHours(-1));
        byte[] der = builder.Build(_ca, BigInteger.One, DateTimeOffset.UtcNow.AddDays(7), HashAlgorithmName.SHA256);
        string path = Path.Combine(Directory, "cacrl.pem");
        File.WriteAllText(path, PemEncoding.WriteString("X509 CRL", der));
        return path;
    }

    public void Dispose()
    {
        _caKey.Dispose();
        _ca.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
