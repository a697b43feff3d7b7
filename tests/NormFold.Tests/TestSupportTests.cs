namespace NormFold.Tests;

/// <summary>The suite's own hygiene: temp folders of old runs are removed, never what they link to.</summary>
public class TestSupportTests
{
    [Fact]
    public void Stale_temp_folders_are_swept_fresh_ones_and_link_targets_are_kept()
    {
        string root = Path.Combine(TestSupport.TempDir(), "root");
        string outside = TestSupport.TempDir();
        File.WriteAllText(Path.Combine(outside, "keep.txt"), "x");
        string old = Directory.CreateDirectory(Path.Combine(root, "old")).FullName;
        File.WriteAllText(Path.Combine(old, "m.onnx"), "x");
        File.CreateSymbolicLink(Path.Combine(old, "link.onnx"), Path.Combine(outside, "keep.txt"));
        Directory.CreateSymbolicLink(Path.Combine(old, "dirlink"), outside);
        Directory.SetLastWriteTimeUtc(old, DateTime.UtcNow - TestSupport.StaleAfter - TimeSpan.FromMinutes(1));
        string fresh = Directory.CreateDirectory(Path.Combine(root, "fresh")).FullName;

        Assert.Equal(1, TestSupport.SweepStale(root, TestSupport.StaleAfter));

        Assert.False(Directory.Exists(old));
        Assert.True(Directory.Exists(fresh));
        Assert.True(File.Exists(Path.Combine(outside, "keep.txt")));
        Assert.Equal(0, TestSupport.SweepStale(Path.Combine(root, "absent"), TestSupport.StaleAfter));
    }
}
