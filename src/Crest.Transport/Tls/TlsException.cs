namespace Crest.Transport.Tls;

/// <summary>A TLS connection could not be set up: credentials unreadable, handshake refused, peer not trusted.</summary>
public sealed class TlsException(string message, Exception? inner = null) : Exception(message, inner);
