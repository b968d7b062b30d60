// Writes JSON text exactly as crit prints it: Python's json.dump with its defaults (ensure_ascii, so every
// character outside printable ASCII is a \u escape with four hex digits) and either indent=None (one line, ", " and ": "
// between items) or indent=4 (crit --pretty: "," at line ends, ": " after keys, "[]"/"{}" when empty).
// Byte-for-byte equal text lets `crest show` be diffed against `crit show`.
using System.Globalization;
using System.Text;

namespace Crest.Images.Json;

internal sealed class PythonJsonWriter(TextWriter output, bool indent)
{
    // Per open container: whether an item has been written into it yet.
    private readonly Stack<bool> _hasItems = new();
    private bool _afterKey;

    public void StartObject() => Open('{');

    public void EndObject() => Close('}');

    public void StartArray() => Open('[');

    public void EndArray() => Close(']');

    public void Key(string name)
    {
        BeforeItem();
        WriteString(name);
        output.Write(": ");
        _afterKey = true;
    }

    public void String(string value)
    {
        BeforeValue();
        WriteString(value);
    }

    public void Number(Int128 value)
    {
        BeforeValue();
        output.Write(value.ToString(CultureInfo.InvariantCulture));
    }

    public void Bool(bool value)
    {
        BeforeValue();
        output.Write(value ? "true" : "false");
    }

    public void Null()
    {
        BeforeValue();
        output.Write("null");
    }

    private void Open(char bracket)
    {
        BeforeValue();
        output.Write(bracket);
        _hasItems.Push(false);
    }

    private void Close(char bracket)
    {
        bool hadItems = _hasItems.Pop();
        if (indent && hadItems)
            NewLine();
        output.Write(bracket);
    }

    private void BeforeValue()
    {
        if (_afterKey)
        {
            _afterKey = false;
            return;
        }
        if (_hasItems.Count > 0)
            BeforeItem();
    }

    private void BeforeItem()
    {
        bool hadItems = _hasItems.Pop();
        _hasItems.Push(true);
        if (hadItems)
            output.Write(indent ? "," : ", ");
        if (indent)
            NewLine();
    }

    private void NewLine()
    {
        output.Write('\n');
        for (int i = 0; i < _hasItems.Count; i++)
            output.Write("    ");
    }

    // Python's ensure_ascii escaping: the two-character escapes json knows, \u00XX for other control
    // characters, \u plus four hex digits (surrogate pairs beyond the BMP, lower-case hex) for everything outside ' '..'~'.
    private void WriteString(string value)
    {
        var text = new StringBuilder(value.Length + 2);
        text.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < ' ' || c > '~')
                        text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        text.Append(c);
                    break;
            }
        }
        text.Append('"');
        output.Write(text);
    }
}
