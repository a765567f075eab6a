package local.apicurio;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * The bean the config-index extension's build step would have made: the registry's settings
 * that may change at run time. That step is missing (see config-index-deployment/pom.xml), so
 * the list is empty: every setting is fixed at start, which is all the tests need.
 */
@ApplicationScoped
public class NoDynamicConfig {
    @Produces
    @ApplicationScoped
    public DynamicConfigPropertyList dynamicConfigPropertyList() {
        return new DynamicConfigPropertyList(List.of());
    }
}
