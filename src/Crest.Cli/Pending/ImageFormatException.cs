// Stand-in until the images branch is merged; see Pending/README.md.
namespace Crest.Images;

public class ImageFormatException(string message) : Exception(message);
