// TLS over an established connection with .NET's SslStream, set up the way CRIU's tls.c does it: both ends
// load a certificate and key, the server requires the client's certificate, each end verifies the other's
// chain against the CA file (plus the system roots when no CA file was given) and the CRL, and the peer's
// certificate must name the address (IP address SAN, DNS SAN or CN) unless --tls-no-cn-verify. Like CRIU,
// the server checks the client's certificate against the server's own --address when one was given.
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Crest.Transport.Tls;

public static class TlsChannel
{
    /// <summary>Loads what <paramref name="options"/> name (certificate, key, CA, CRL) as a handshake would: an end that
    /// must not fail later (a dump about to kill its tree) finds a wrong path or key before.</summary>
    /// <exception cref="TlsException">A file is missing or unreadable, or the key does not match the certificate.</exception>
    public static void Check(TlsOptions options) => Credentials.Load(options);

    /// <summary>Handshake as the client over <paramref name="connection"/> to <paramref name="address"/>; the
    /// returned stream owns the connection.</summary>
    public static SslStream Connect(Stream connection, string address, TlsOptions options, TimeSpan timeout)
    {
        var credentials = Credentials.Load(options);
        var ssl = new SslStream(connection, leaveInnerStreamOpen: false);
        try
        {
            var client = new SslClientAuthenticationOptions
            {
                TargetHost = address,
                ClientCertificates = [credentials.Certificate],
                LocalCertificateSelectionCallback = (_, _, _, _, _) => credentials.Certificate,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => credentials.Verify(certificate, options.NoCnVerify ? null : address, out _),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            };
            Handshake(ssl.AuthenticateAsClientAsync(client), timeout, () => credentials.LastRefusal, "server", address);
            return ssl;
        }
        catch
        {
            ssl.Dispose();
            throw;
        }
    }

    /// <summary>Handshake as the server over an accepted <paramref name="connection"/>; <paramref name="address"/>
    /// is the server's --address (the name a client's certificate is checked against), or null.</summary>
    public static SslStream Accept(Stream connection, string? address, TlsOptions options, TimeSpan timeout)
    {
        var credentials = Credentials.Load(options);
        var ssl = new SslStream(connection, leaveInnerStreamOpen: false);
        try
        {
            var server = new SslServerAuthenticationOptions
            {
                ServerCertificateContext = SslStreamCertificateContext.Create(credentials.Certificate, additionalCertificates: null, offline: true),
                ClientCertificateRequired = true,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => credentials.Verify(certificate, options.NoCnVerify ? null : address, out _),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            };
            Handshake(ssl.AuthenticateAsServerAsync(server), timeout, () => credentials.LastRefusal, "client", address ?? "(any)");
            return ssl;
        }
        catch
        {
            ssl.Dispose();
            throw;
        }
    }

    private static void Handshake(Task handshake, TimeSpan timeout, Func<string?> refusal, string peer, string address)
    {
        try
        {
            if (!handshake.Wait(timeout))
                throw new TlsException($"TLS handshake with the {peer} ({address}) timed out after {timeout.TotalSeconds:0.#} s");
        }
        catch (AggregateException e) when (e.InnerException is AuthenticationException or IOException)
        {
            string why = refusal() is { } r ? $": {r}" : $": {e.InnerException!.Message}";
            throw new TlsException($"TLS handshake with the {peer} ({address}) failed{why}", e.InnerException);
        }
    }

    /// <summary>This end's certificate and what it trusts.</summary>
    private sealed class Credentials
    {
        private Credentials(X509Certificate2 certificate, X509Certificate2Collection authorities, bool systemRoots, RevocationList? crl)
        {
            Certificate = certificate;
            Authorities = authorities;
            SystemRoots = systemRoots;
            Crl = crl;
        }

        public X509Certificate2 Certificate { get; }
        public X509Certificate2Collection Authorities { get; }
        public bool SystemRoots { get; }
        public RevocationList? Crl { get; }

        /// <summary>Why the last peer certificate was refused (SslStream only says that it was).</summary>
        public string? LastRefusal { get; private set; }

        public static Credentials Load(TlsOptions options)
        {
            X509Certificate2 certificate;
            try
            {
                using var pem = X509Certificate2.CreateFromPemFile(options.CertPath, options.KeyPath);
                // An ephemeral PEM key cannot be used by the TLS layer on every platform; an exported-and-reloaded one can.
                certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), password: null);
            }
            catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new TlsException($"Failed to set certificate/private key pair ({options.CertPath}, {options.KeyPath}): {e.Message}", e);
            }

            var authorities = new X509Certificate2Collection();
            string caPath = options.CaCertPath;
            if (options.CaCert is not null || File.Exists(caPath))
            {
                try
                {
                    authorities.ImportFromPemFile(caPath);
                }
                catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
                {
                    throw new TlsException($"Can't read the CA certificates {caPath}: {e.Message}", e);
                }
                if (authorities.Count == 0 && options.CaCert is not null)
                    throw new TlsException($"No trusted CA certificates in {caPath}");
            }

            RevocationList? crl = null;
            if (options.CaCrl is not null || File.Exists(TlsOptions.DefaultCaCrl))
                crl = RevocationList.Load(options.CaCrl ?? TlsOptions.DefaultCaCrl);
            return new Credentials(certificate, authorities, systemRoots: options.CaCert is null, crl);
        }

        public bool Verify(X509Certificate? presented, string? name, out string? why)
        {
            why = Check(presented, name);
            LastRefusal = why;
            return why is null;
        }

        private string? Check(X509Certificate? presented, string? name)
        {
            if (presented is null) return "the peer sent no certificate";
            using var certificate = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
            using var chain = new X509Chain();
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (!SystemRoots || Authorities.Count > 0)
            {
                chain.ChainPolicy.TrustMode = SystemRoots ? X509ChainTrustMode.System : X509ChainTrustMode.CustomRootTrust;
                if (SystemRoots) chain.ChainPolicy.ExtraStore.AddRange(Authorities);
                else chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
            }
            if (!chain.Build(certificate))
            {
                // With system roots and an extra CA file, a chain ending at one of the file's CAs is trusted too.
                bool endsAtFileCa = SystemRoots && chain.ChainElements.Count > 0
                    && chain.ChainStatus.All(s => s.Status == X509ChainStatusFlags.UntrustedRoot)
                    && Authorities.Any(a => a.RawDataMemory.Span.SequenceEqual(chain.ChainElements[^1].Certificate.RawDataMemory.Span));
                if (!endsAtFileCa)
                    return $"certificate \"{certificate.Subject}\" is not trusted: {string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()))}";
            }
            if (Crl is not null)
            {
                var issuer = chain.ChainElements.Count > 1 ? chain.ChainElements[1].Certificate : chain.ChainElements.Count == 1 ? chain.ChainElements[0].Certificate : null;
                if (issuer is null || !Crl.SignedBy(issuer))
                    return $"the revocation list {Crl.Path} is not signed by the issuer of \"{certificate.Subject}\"";
                if (Crl.Revokes(certificate))
                    return $"certificate \"{certificate.Subject}\" (serial {certificate.SerialNumber}) is revoked by {Crl.Path}";
            }
            if (name is not null && !certificate.MatchesHostname(name, allowWildcards: true, allowCommonName: true))
                return $"certificate \"{certificate.Subject}\" does not name {name} (--tls-no-cn-verify accepts it)";
            return null;
        }
    }
}
