// TLS between image-proxy and image-cache (CRIU's page-server options: --tls, --tls-cert, --tls-key,
// --tls-cacert, --tls-no-cn-verify), with .NET's SslStream over OpenSSL. Both sides present a certificate
// when given one; a side given --tls-cacert accepts only peers whose chain ends at that CA (the cache then
// requires a client certificate). Without --tls-cacert the system's trust store decides.
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Crest.Transport.Remote;

public sealed record TlsSettings(string? CertificatePath, string? KeyPath, string? CaCertificatePath, bool NoCnVerify)
{
    private X509Certificate2? _certificate;
    private X509Certificate2Collection? _trusted;

    /// <summary>Reads the PEM files now, so that a bad path is reported when the daemon starts.</summary>
    public TlsSettings Load()
    {
        try
        {
            if (CertificatePath is not null)
            {
                using var pem = X509Certificate2.CreateFromPemFile(CertificatePath, KeyPath ?? CertificatePath);
                // Exported and loaded again: OpenSSL-backed keys from PEM are ephemeral, which SslStream servers refuse.
                _certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }
            if (CaCertificatePath is not null)
            {
                _trusted = [];
                _trusted.ImportFromPemFile(CaCertificatePath);
            }
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new RemoteImageException($"TLS: cannot load {CertificatePath ?? CaCertificatePath}: {e.Message}", e);
        }
        return this;
    }

    /// <summary>The cache's side: needs a certificate.</summary>
    public async Task<SslStream> AcceptAsync(Stream inner, CancellationToken cancel)
    {
        var certificate = _certificate ?? throw new RemoteImageException("TLS: the image-cache needs --tls-cert and --tls-key");
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = certificate,
                ClientCertificateRequired = _trusted is not null,
                RemoteCertificateValidationCallback = (_, cert, _, errors) => Validate(cert, errors, client: true),
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            }, cancel).ConfigureAwait(false);
            return ssl;
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new RemoteImageException($"TLS handshake with the image-proxy failed: {e.Message}", e);
        }
    }

    /// <summary>The proxy's side: checks the cache's certificate (and name, unless --tls-no-cn-verify).</summary>
    public async Task<SslStream> ConnectAsync(Stream inner, string host, CancellationToken cancel)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                ClientCertificates = _certificate is null ? null : [_certificate],
                RemoteCertificateValidationCallback = (_, cert, _, errors) => Validate(cert, errors, client: false),
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            }, cancel).ConfigureAwait(false);
            return ssl;
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new RemoteImageException($"TLS handshake with the image-cache at {host} failed: {e.Message}", e);
        }
    }

    private bool Validate(X509Certificate? certificate, SslPolicyErrors errors, bool client)
    {
        if (certificate is null) return !(client && _trusted is not null) && errors == SslPolicyErrors.None;
        if (NoCnVerify || client) errors &= ~SslPolicyErrors.RemoteCertificateNameMismatch;
        if (_trusted is null) return errors == SslPolicyErrors.None;
        // Our own CA decides, whatever the system store says of it.
        errors &= ~SslPolicyErrors.RemoteCertificateChainErrors;
        if (errors != SslPolicyErrors.None) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
    }
}
