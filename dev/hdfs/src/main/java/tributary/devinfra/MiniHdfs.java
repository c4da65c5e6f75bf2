package tributary.devinfra;

import java.io.File;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.protocol.DatanodeInfo;
import org.apache.hadoop.hdfs.protocol.HdfsConstants.DatanodeReportType;

import sun.misc.Signal;

/**
 * Local-dev HDFS: one NameNode and one DataNode in a single JVM (Hadoop's MiniDFSCluster),
 * on fixed ports, keeping its data across restarts.
 *
 * <p>Usage: {@code MiniHdfs [rpcPort] [httpPort]}; otherwise read from HDFS_PORT (9000),
 * HDFS_HTTP_PORT (9870, 0 = any free port) and HDFS_BASE_DIR (required: where the name and
 * data directories live). Everything binds to 127.0.0.1 and the DataNode registers as
 * 127.0.0.1, so clients that talk to the DataNode directly (hdfs-native) reach it from the
 * same machine. Simple auth, permissions off, replication 1.
 *
 * <p>Prints {@code MiniDFSCluster ready at hdfs://localhost:PORT} once the NameNode is active,
 * the DataNode has registered and safe mode is off; then runs until killed. SIGTERM shuts the
 * cluster down cleanly (the data directories are kept); kill -9 is survivable too, the
 * NameNode replays its edit log on the next start.
 */
public final class MiniHdfs {
  private static final long SAFE_MODE_TIMEOUT_MS = 60_000;
  private static final long SHUTDOWN_TIMEOUT_MS = 25_000;

  private MiniHdfs() {}

  public static void main(String[] args) {
    try {
      run(args);
    } catch (Throwable t) {
      // Hadoop leaves non-daemon threads behind: make a failed start end the process.
      System.out.println("MiniHdfs: failed: " + t);
      t.printStackTrace(System.out);
      halt(1);
    }
  }

  private static void run(String[] args) throws Exception {
    int rpcPort = Integer.parseInt(arg(args, 0, "HDFS_PORT", "9000"));
    int httpPort = Integer.parseInt(arg(args, 1, "HDFS_HTTP_PORT", "9870"));
    String base = env("HDFS_BASE_DIR", null);
    if (base == null || base.isEmpty()) {
      throw new IllegalArgumentException("HDFS_BASE_DIR is not set");
    }
    File baseDir = new File(base).getAbsoluteFile();
    long blockSize = Long.parseLong(env("HDFS_BLOCK_SIZE", String.valueOf(16L * 1024 * 1024)));

    // With manageNameDfsDirs the NameNode's directories are <base>/name-0-1 and <base>/name-0-2;
    // the DataNode's are <base>/data/data1. A VERSION file means it was formatted before.
    File[] nameDirs = MiniDFSCluster.getNameNodeDirectory(baseDir, 0, 0);
    boolean formatted = new File(nameDirs[0], "current/VERSION").isFile();

    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir.getPath());
    conf.set("hadoop.tmp.dir", new File(baseDir, "tmp").getPath());
    conf.set("hadoop.security.authentication", "simple");
    conf.setBoolean("hadoop.security.authorization", false);
    conf.setBoolean("dfs.permissions.enabled", false);
    conf.setInt("dfs.replication", 1);
    conf.setLong("dfs.blocksize", blockSize);
    conf.setInt("dfs.namenode.safemode.extension", 0);
    conf.setInt("dfs.namenode.safemode.min.datanodes", 1);
    // Register the DataNode as 127.0.0.1 (not the machine's hostname): the NameNode hands this
    // address to clients, which then connect to the DataNode's transfer port directly.
    conf.set("dfs.datanode.hostname", "127.0.0.1");
    conf.setBoolean("dfs.namenode.datanode.registration.ip-hostname-check", false);
    // Disk space is whatever the machine has; do not let the NameNode go into safe mode over
    // a nearly full dev disk before it really is.
    conf.setLong("dfs.namenode.resource.du.reserved", 16L * 1024 * 1024);

    // SIGTERM/SIGINT stop the cluster from the main thread *before* the JVM starts its
    // shutdown: MiniDFSCluster.shutdown() unregisters Hadoop shutdown hooks, which Hadoop
    // refuses once JVM shutdown is in progress (the DataNode would then die half-stopped).
    CountDownLatch stopRequested = new CountDownLatch(1);
    Signal.handle(new Signal("TERM"), sig -> stopRequested.countDown());
    Signal.handle(new Signal("INT"), sig -> stopRequested.countDown());

    System.out.println("MiniHdfs: base dir " + baseDir + (formatted
        ? " (existing namespace, not formatting)" : " (new namespace, formatting)"));

    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, baseDir)
        .nameNodePort(rpcPort)
        .nameNodeHttpPort(httpPort)
        .numDataNodes(1)
        .storagesPerDatanode(1)
        .format(!formatted)
        .manageNameDfsDirs(true)
        .manageDataDfsDirs(true)
        .checkExitOnShutdown(false)
        .build();

    cluster.waitActive();
    waitSafeModeOff(cluster);

    DatanodeInfo[] dns = cluster.getNameNodeRpc().getDatanodeReport(DatanodeReportType.LIVE);
    for (DatanodeInfo dn : dns) {
      System.out.println("MiniHdfs: datanode registered as " + dn.getIpAddr() + ":"
          + dn.getXferPort() + " (hostname " + dn.getHostName() + ")");
    }
    System.out.println("MiniHdfs: namenode http at http://localhost:"
        + cluster.getNameNode().getHttpAddress().getPort());
    System.out.println("MiniDFSCluster ready at hdfs://localhost:" + cluster.getNameNodePort());
    System.out.flush();

    stopRequested.await();
    System.out.println("MiniHdfs: signal received, shutting down");
    Thread watchdog = new Thread(() -> {
      try {
        Thread.sleep(SHUTDOWN_TIMEOUT_MS);
        System.out.println("MiniHdfs: shutdown took over " + SHUTDOWN_TIMEOUT_MS / 1000
            + " s, halting");
        halt(1);
      } catch (InterruptedException e) {
        // shut down in time
      }
    }, "shutdown-watchdog");
    watchdog.setDaemon(true);
    watchdog.start();
    int status = 0;
    try {
      // Not cluster.shutdown(): with deleteDfsDir=false it still registers the whole base
      // dir for delete-on-exit, which would wipe the namespace when the JVM exits.
      cluster.shutdownDataNodes();
      cluster.shutdownNameNodes();
      System.out.println("MiniHdfs: shut down cleanly");
    } catch (Throwable t) {
      System.out.println("MiniHdfs: error during shutdown: " + t);
      t.printStackTrace(System.out);
      status = 1;
    }
    halt(status);
  }

  /**
   * Ends the JVM without running shutdown hooks or delete-on-exit: MiniDFSCluster registers
   * its base dir for deletion when a build fails halfway, and the data must survive.
   */
  private static void halt(int status) {
    System.out.flush();
    System.err.flush();
    Runtime.getRuntime().halt(status);
  }

  private static void waitSafeModeOff(MiniDFSCluster cluster) throws InterruptedException {
    long deadline = System.currentTimeMillis() + SAFE_MODE_TIMEOUT_MS;
    while (cluster.getNameNode().isInSafeMode()) {
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("NameNode still in safe mode after "
            + SAFE_MODE_TIMEOUT_MS / 1000 + " s");
      }
      Thread.sleep(200);
    }
  }

  private static String arg(String[] args, int i, String envName, String dflt) {
    if (args.length > i && !args[i].isEmpty()) {
      return args[i];
    }
    return env(envName, dflt);
  }

  private static String env(String name, String dflt) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? dflt : v;
  }
}
