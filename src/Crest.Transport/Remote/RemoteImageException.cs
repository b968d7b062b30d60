namespace Crest.Transport.Remote;

/// <summary>
/// Images could not be handed over: the proxy or cache is absent, a connection broke, the cache refused
/// (memory limit) or does not hold what was asked for. The message says which side and why.
/// </summary>
public sealed class RemoteImageException(string message, Exception? inner = null) : Exception(message, inner);
